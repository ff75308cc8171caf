package dev.hangup.example;

import com.google.protobuf.ByteString;
import hangup.example.v1.Subscription.SessionsRequest;
import hangup.example.v1.Subscription.SubscribeRequest;
import hangup.example.v1.Subscription.Update;
import hangup.example.v1.SubscriptionServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A grpc-java (Netty) client of hangup.example.v1.SubscriptionService, for the cross-language
 * interop matrix (test/polyglot/interop_test.go).
 *
 * <pre>
 *   java -cp hangup-example-java.jar dev.hangup.example.Client \
 *       --target 127.0.0.1:9090 --case unary|streaming|large|cancel
 * </pre>
 *
 * <p>It exits 0 when the case passed and prints one line saying what went wrong otherwise.
 */
public final class Client {
  /** The payload of the large case, each way, in bytes. */
  static final int LARGE_SIZE = 4 * 1024 * 1024;
  /** Above LARGE_SIZE plus the message's framing, in bytes. */
  static final int MAX_MESSAGE = 16 * 1024 * 1024;
  /** How soon a cancelled call's session must be freed, in milliseconds. */
  static final long FREE_BOUND_MS = 5000;
  /** Bounds one call, in seconds. */
  static final long CALL_TIMEOUT_S = 10;

  /** A case that did not pass; its message is the one line printed. */
  static final class Failure extends Exception {
    Failure(String msg) {
      super(msg);
    }
  }

  /** One event of a Subscribe call: an Update, the end (OK) or an error. */
  record Event(Update update, boolean end, Throwable err) {}

  /** A Subscribe call whose events are read one by one. */
  static final class Call {
    final BlockingQueue<Event> events = new LinkedBlockingQueue<>();
    final ClientCallStreamObserver<SubscribeRequest> requests;

    Call(SubscriptionServiceGrpc.SubscriptionServiceStub stub) {
      requests =
          (ClientCallStreamObserver<SubscribeRequest>)
              stub.withDeadlineAfter(CALL_TIMEOUT_S, TimeUnit.SECONDS)
                  .subscribe(
                      new StreamObserver<Update>() {
                        @Override
                        public void onNext(Update u) {
                          events.add(new Event(u, false, null));
                        }

                        @Override
                        public void onError(Throwable t) {
                          events.add(new Event(null, false, t));
                        }

                        @Override
                        public void onCompleted() {
                          events.add(new Event(null, true, null));
                        }
                      });
    }

    Event next(String what) throws Failure, InterruptedException {
      Event e = events.poll(CALL_TIMEOUT_S, TimeUnit.SECONDS);
      if (e == null) {
        throw new Failure(what + ": nothing within " + CALL_TIMEOUT_S + "s");
      }
      return e;
    }

    Update update(String what) throws Failure, InterruptedException {
      Event e = next(what);
      if (e.err() != null) {
        throw new Failure(what + ": " + Status.fromThrowable(e.err()));
      }
      if (e.end()) {
        throw new Failure(what + ": the call ended early");
      }
      return e.update();
    }
  }

  static long sessions(SubscriptionServiceGrpc.SubscriptionServiceBlockingStub stub) throws Failure {
    try {
      return stub.withDeadlineAfter(CALL_TIMEOUT_S, TimeUnit.SECONDS)
          .sessions(SessionsRequest.getDefaultInstance())
          .getSessions();
    } catch (StatusRuntimeException e) {
      throw new Failure("Sessions: " + e.getStatus());
    }
  }

  static Call open(SubscriptionServiceGrpc.SubscriptionServiceStub stub)
      throws Failure, InterruptedException {
    Call call = new Call(stub);
    Update first = call.update("first Update");
    if (first.getSeq() != 0) {
      throw new Failure("first Update has seq " + first.getSeq() + ", want 0");
    }
    return call;
  }

  static void streaming(SubscriptionServiceGrpc.SubscriptionServiceStub stub, int n, ByteString payload)
      throws Failure, InterruptedException {
    Call call = open(stub);
    for (int i = 1; i <= n; i++) {
      String topic = "topic-" + i;
      call.requests.onNext(SubscribeRequest.newBuilder().setTopic(topic).setPayload(payload).build());
      Update u = call.update("Update " + i);
      if (!u.getTopic().equals(topic) || u.getSeq() != i) {
        throw new Failure(
            "Update " + i + " has topic " + u.getTopic() + " seq " + u.getSeq() + ", want " + topic
                + " seq " + i);
      }
      if (!u.getPayload().equals(payload)) {
        throw new Failure(
            "Update " + i + " has a payload of " + u.getPayload().size()
                + " bytes that differs from the " + payload.size() + " sent");
      }
    }
    call.requests.onCompleted();
    Event last = call.next("after half-close");
    if (last.err() != null) {
      throw new Failure("after half-close: " + Status.fromThrowable(last.err()) + ", want OK");
    }
    if (!last.end()) {
      throw new Failure("after half-close: an extra Update, want the call to end with OK");
    }
  }

  static void cancel(
      SubscriptionServiceGrpc.SubscriptionServiceStub stub,
      SubscriptionServiceGrpc.SubscriptionServiceBlockingStub blocking)
      throws Failure, InterruptedException {
    long base = sessions(blocking);
    Call call = open(stub);
    call.requests.cancel("the interop client cancels", null); // RST_STREAM(CANCEL)
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(FREE_BOUND_MS);
    while (true) {
      long n = sessions(blocking);
      if (n <= base) {
        return;
      }
      if (System.nanoTime() > deadline) {
        throw new Failure(
            "the server holds " + n + " sessions " + FREE_BOUND_MS + " ms after the cancel, want "
                + base);
      }
      Thread.sleep(50); // polling the server: there is nothing to wait on
    }
  }

  static void run(String target, String kase) throws Failure, InterruptedException {
    ManagedChannel channel =
        NettyChannelBuilder.forTarget(target)
            .usePlaintext()
            .maxInboundMessageSize(MAX_MESSAGE)
            .build();
    try {
      SubscriptionServiceGrpc.SubscriptionServiceStub stub = SubscriptionServiceGrpc.newStub(channel);
      SubscriptionServiceGrpc.SubscriptionServiceBlockingStub blocking =
          SubscriptionServiceGrpc.newBlockingStub(channel);
      switch (kase) {
        case "unary" -> {
          long n = sessions(blocking);
          if (n < 0) {
            throw new Failure("Sessions = " + n + ", want a count");
          }
        }
        case "streaming" -> streaming(stub, 3, ByteString.EMPTY);
        case "large" -> {
          byte[] b = new byte[LARGE_SIZE];
          for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i % 251);
          }
          streaming(stub, 1, ByteString.copyFrom(b));
        }
        case "cancel" -> cancel(stub, blocking);
        default -> throw new Failure(
            "--case \"" + kase + "\": want unary, streaming, large or cancel");
      }
    } finally {
      channel.shutdownNow();
      channel.awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  public static void main(String[] args) throws InterruptedException {
    String target = null;
    String kase = null;
    try {
      for (int i = 0; i < args.length; i++) {
        String flag = args[i];
        if (i + 1 >= args.length) {
          throw new Failure(flag + " needs a value");
        }
        switch (flag) {
          case "--target" -> target = args[++i];
          case "--case" -> kase = args[++i];
          default -> throw new Failure(
              "unknown flag " + flag + "; want --target HOST:PORT --case CASE");
        }
      }
      if (target == null || kase == null) {
        throw new Failure("want --target HOST:PORT --case unary|streaming|large|cancel");
      }
      run(target, kase);
    } catch (Failure e) {
      System.out.println("java client: " + e.getMessage());
      System.exit(1);
    }
    System.exit(0);
  }
}
