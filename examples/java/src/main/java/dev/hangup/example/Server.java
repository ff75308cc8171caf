package dev.hangup.example;

import com.google.protobuf.ByteString;
import hangup.example.v1.Subscription.SessionsReply;
import hangup.example.v1.Subscription.SessionsRequest;
import hangup.example.v1.Subscription.SubscribeRequest;
import hangup.example.v1.Subscription.Update;
import hangup.example.v1.SubscriptionServiceGrpc;
import hangup.notify.v1.DisconnectNotifyGrpc;
import hangup.notify.v1.Notify.DisconnectEvent;
import hangup.notify.v1.Notify.NotifyRequest;
import hangup.notify.v1.Notify.NotifyResponse;
import hangup.notify.v1.Notify.Scope;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A grpc-java app behind the hangup sidecar. It holds one session per Subscribe stream, keyed by
 * the x-hangup-connection-id and x-hangup-stream-id headers the sidecar adds to every request,
 * and frees it when hangup.notify.v1.DisconnectNotify says the client is gone.
 *
 * <pre>java -jar hangup-example-java.jar --port 8080 --notify-port 15091</pre>
 */
public final class Server {
  private static final Metadata.Key<String> CONNECTION_ID =
      Metadata.Key.of("x-hangup-connection-id", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> STREAM_ID =
      Metadata.Key.of("x-hangup-stream-id", Metadata.ASCII_STRING_MARSHALLER);
  /**
   * The largest message the app takes, in bytes: above grpc-java's 4 MiB default, so that clients
   * can send large payloads.
   */
  static final int MAX_MESSAGE = 16 * 1024 * 1024;

  /** Starts the ids of calls that did not come through hangup: no event frees them. */
  private static final String LOCAL_PREFIX = "local-";

  /** The session key of the current call, set by {@link #keyInterceptor}. */
  private static final Context.Key<Key> KEY = Context.key("hangup-session-key");

  /** Names a stream the way a DisconnectEvent does; streamId is an unsigned 32-bit id. */
  record Key(String connectionId, int streamId) {
    @Override
    public String toString() {
      return connectionId + "/" + Integer.toUnsignedString(streamId);
    }
  }

  /** The per-stream state the app must not leak. */
  static final class Session {
    final Key key;
    private final ServerCallStreamObserver<Update> out; // guarded by this
    private boolean ended; // guarded by this
    private long seq; // guarded by this

    Session(Key key, ServerCallStreamObserver<Update> out) {
      this.key = key;
      this.out = out;
    }

    synchronized void send(String topic, ByteString payload) {
      if (ended) {
        return;
      }
      out.onNext(
          Update.newBuilder()
              .setTopic(topic)
              .setSeq(seq++)
              .setConnectionId(key.connectionId())
              .setStreamId(key.streamId())
              .setPayload(payload)
              .build());
    }

    synchronized void complete() {
      if (!ended) {
        ended = true;
        out.onCompleted();
      }
    }

    /** Ends the call with CANCELLED; the sidecar resets the app-side stream too. */
    synchronized void cancel(String why) {
      if (!ended) {
        ended = true;
        if (!out.isCancelled()) {
          out.onError(Status.CANCELLED.withDescription(why).asRuntimeException());
        }
      }
    }

    synchronized void markEnded() {
      ended = true;
    }
  }

  private final Map<Key, Session> sessions = new ConcurrentHashMap<>();
  private final AtomicLong localIds = new AtomicLong();

  /**
   * Reads hangup's headers into the call's Context. A call without them (no sidecar in front)
   * gets a local id that no event can name.
   */
  private final ServerInterceptor keyInterceptor =
      new ServerInterceptor() {
        @Override
        public <Q, R> ServerCall.Listener<Q> interceptCall(
            ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
          Key key = null;
          String conn = headers.get(CONNECTION_ID);
          String stream = headers.get(STREAM_ID);
          if (conn != null && !conn.isEmpty() && stream != null) {
            try {
              key = new Key(conn, Integer.parseUnsignedInt(stream));
            } catch (NumberFormatException e) {
              key = null;
            }
          }
          if (key == null) {
            key = new Key(LOCAL_PREFIX + localIds.incrementAndGet(), 0);
          }
          return Contexts.interceptCall(Context.current().withValue(KEY, key), call, headers, next);
        }
      };

  private final class Subscriptions extends SubscriptionServiceGrpc.SubscriptionServiceImplBase {
    @Override
    public StreamObserver<SubscribeRequest> subscribe(StreamObserver<Update> responseObserver) {
      Key key = KEY.get();
      Session s = new Session(key, (ServerCallStreamObserver<Update>) responseObserver);
      sessions.put(key, s);
      ((ServerCallStreamObserver<Update>) responseObserver)
          .setOnCancelHandler(
              () -> {
                s.markEnded();
                sessions.remove(key, s);
              });
      log("session " + key + " held");
      s.send("", ByteString.EMPTY);
      return new StreamObserver<>() {
        @Override
        public void onNext(SubscribeRequest req) {
          s.send(req.getTopic(), req.getPayload());
        }

        @Override
        public void onError(Throwable t) {
          s.markEnded();
          sessions.remove(key, s);
        }

        @Override
        public void onCompleted() {
          // The client half-closed: end with OK.
          sessions.remove(key, s);
          s.complete();
        }
      };
    }

    @Override
    public void sessions(SessionsRequest req, StreamObserver<SessionsReply> out) {
      out.onNext(SessionsReply.newBuilder().setSessions(sessions.size()).build());
      out.onCompleted();
    }
  }

  private final class Notifier extends DisconnectNotifyGrpc.DisconnectNotifyImplBase {
    /**
     * Only unlinks state and answers at once, so that the sidecar's call never waits on the app's
     * cleanup. An event for a session already gone changes nothing, so redelivery is harmless.
     */
    @Override
    public void notify(NotifyRequest req, StreamObserver<NotifyResponse> out) {
      for (DisconnectEvent ev : req.getEventsList()) {
        int freed = 0;
        for (Session s : sessions.values()) {
          if (matches(ev, s.key) && sessions.remove(s.key, s)) {
            s.cancel("hangup: client gone (" + ev.getReason() + ")");
            freed++;
          }
        }
        if (freed > 0) {
          String what =
              ev.getScope() == Scope.SCOPE_SIDECAR
                  ? "sidecars other than " + ev.getIncarnation()
                  : ev.getConnectionId() + "/" + Integer.toUnsignedString(ev.getStreamId());
          log("freed " + freed + " session(s) of " + what + ": " + ev.getReason()
              + " (event " + ev.getEventId() + ")");
        }
      }
      out.onNext(NotifyResponse.getDefaultInstance());
      out.onCompleted();
    }
  }

  /**
   * A stream event names one stream; a connection event every stream of the connection. A
   * SCOPE_SIDECAR event names the sidecar process now live: every stream relayed by another
   * incarnation belonged to a sidecar that died without reporting it.
   */
  static boolean matches(DisconnectEvent ev, Key key) {
    if (ev.getScope() == Scope.SCOPE_SIDECAR) {
      String inc = incarnationOf(key.connectionId());
      return !ev.getIncarnation().isEmpty() && !inc.isEmpty() && !inc.equals(ev.getIncarnation());
    }
    if (!key.connectionId().equals(ev.getConnectionId())) {
      return false;
    }
    if (ev.getScope() == Scope.SCOPE_STREAM) {
      return key.streamId() == ev.getStreamId();
    }
    return ev.getScope() == Scope.SCOPE_CONNECTION;
  }

  /**
   * The sidecar process that relayed a connection: its id is "&lt;incarnation&gt;-&lt;n&gt;". Local ids
   * (calls not through hangup) have none.
   */
  static String incarnationOf(String connectionId) {
    int dash = connectionId.indexOf('-');
    if (dash <= 0 || connectionId.startsWith(LOCAL_PREFIX)) {
      return "";
    }
    return connectionId.substring(0, dash);
  }

  private static void log(String msg) {
    System.out.println("[java] " + msg);
  }

  private static int port(String flag, String value) {
    try {
      int p = Integer.parseInt(value);
      if (p >= 0 && p <= 65535) {
        return p;
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new IllegalArgumentException(flag + " \"" + value + "\": want a TCP port, 0 to 65535");
  }

  public static void main(String[] args) throws IOException, InterruptedException {
    int port = 8080;
    int notifyPort = 15091;
    try {
      for (int i = 0; i < args.length; i++) {
        String flag = args[i];
        if (i + 1 >= args.length) {
          throw new IllegalArgumentException(flag + ": missing value");
        }
        switch (flag) {
          case "--port" -> port = port(flag, args[++i]);
          case "--notify-port" -> notifyPort = port(flag, args[++i]);
          default -> throw new IllegalArgumentException(
              "unknown flag " + flag + "; want --port N --notify-port N");
        }
      }
    } catch (IllegalArgumentException e) {
      System.err.println("[java] " + e.getMessage());
      System.exit(2);
    }

    Server srv = new Server();
    io.grpc.Server app =
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port))
            .maxInboundMessageSize(MAX_MESSAGE)
            .addService(ServerInterceptors.intercept(srv.new Subscriptions(), srv.keyInterceptor))
            .build()
            .start();
    io.grpc.Server notify =
        NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", notifyPort))
            .addService(srv.new Notifier())
            .build()
            .start();
    log("listening app=127.0.0.1:" + app.getPort() + " notify=127.0.0.1:" + notify.getPort());
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  app.shutdownNow();
                  notify.shutdownNow();
                  try {
                    app.awaitTermination(2, TimeUnit.SECONDS);
                    notify.awaitTermination(2, TimeUnit.SECONDS);
                  } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                  }
                }));
    app.awaitTermination();
  }
}
