package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/notify/check"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type clients struct {
	appAddr    string
	chat       chatv1.ChatServiceClient
	notify     notifyv1.DisconnectNotifyClient
	notifyAddr string
}

// start serves the example on 127.0.0.1 until the test ends.
func start(t *testing.T) clients {
	t.Helper()
	return startWith(t, slog.New(slog.DiscardHandler), true, "")
}

// startWith serves the example on 127.0.0.1 until the test ends, logging to
// log, with Notify served when push is true and Watch read from watchAddr
// when it is not empty.
func startWith(t *testing.T, log *slog.Logger, push bool, watchAddr string) clients {
	t.Helper()
	listen := func() net.Listener {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		return lis
	}
	appLis, notifyLis := listen(), listen()
	serveNotify := notifyLis
	if !push {
		serveNotify = nil // left open and unserved: nothing answers there
		t.Cleanup(func() { notifyLis.Close() })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, log, appLis, serveNotify, watchAddr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("client for %s: %v", addr, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	return clients{
		appAddr:    appLis.Addr().String(),
		chat:       chatv1.NewChatServiceClient(dial(appLis.Addr().String())),
		notify:     notifyv1.NewDisconnectNotifyClient(dial(notifyLis.Addr().String())),
		notifyAddr: notifyLis.Addr().String(),
	}
}

// join opens a chat stream as hangup would relay it and waits until the
// app holds its session (its own message comes back).
func join(t *testing.T, ctx context.Context, c clients, conn, stream string) chatv1.ChatService_ChatClient {
	t.Helper()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-hangup-connection-id", conn, "x-hangup-stream-id", stream)
	s, err := c.chat.Chat(ctx)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if err := s.Send(&chatv1.ChatRequest{Text: "hello from " + conn + "/" + stream}); err != nil {
		t.Fatalf("send: %v", err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if m.GetFrom() == conn+"/"+stream {
			return s
		}
	}
}

func sessions(t *testing.T, ctx context.Context, c clients) int64 {
	t.Helper()
	r, err := c.chat.Sessions(ctx, &chatv1.SessionsRequest{})
	if err != nil {
		t.Fatalf("sessions: %v", err)
	}
	return r.GetSessions()
}

func TestNotifyFreesSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := start(t)
	s1 := join(t, ctx, c, "c1", "1")
	s3 := join(t, ctx, c, "c1", "3")
	s5 := join(t, ctx, c, "c2", "1")
	if n := sessions(t, ctx, c); n != 3 {
		t.Fatalf("sessions = %d, want 3", n)
	}

	tests := []struct {
		name  string
		event *notifyv1.DisconnectEvent
		gone  []chatv1.ChatService_ChatClient
		want  int64
	}{
		{"stream event frees one", &notifyv1.DisconnectEvent{EventId: "e1", Scope: notifyv1.Scope_SCOPE_STREAM,
			Reason: notifyv1.Reason_REASON_RST_STREAM, ConnectionId: "c1", StreamId: 1}, []chatv1.ChatService_ChatClient{s1}, 2},
		{"retry changes nothing", &notifyv1.DisconnectEvent{EventId: "e1", Scope: notifyv1.Scope_SCOPE_STREAM,
			Reason: notifyv1.Reason_REASON_RST_STREAM, ConnectionId: "c1", StreamId: 1}, nil, 2},
		{"connection event frees its streams", &notifyv1.DisconnectEvent{EventId: "e2", Scope: notifyv1.Scope_SCOPE_CONNECTION,
			Reason: notifyv1.Reason_REASON_KEEPALIVE_TIMEOUT, ConnectionId: "c1"}, []chatv1.ChatService_ChatClient{s3}, 1},
		{"unknown connection changes nothing", &notifyv1.DisconnectEvent{EventId: "e3", Scope: notifyv1.Scope_SCOPE_CONNECTION,
			Reason: notifyv1.Reason_REASON_CONNECTION_RESET, ConnectionId: "c9"}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.notify.Notify(ctx, &notifyv1.NotifyRequest{Events: []*notifyv1.DisconnectEvent{tt.event}}); err != nil {
				t.Fatalf("notify: %v", err)
			}
			if n := sessions(t, ctx, c); n != tt.want {
				t.Errorf("sessions = %d, want %d", n, tt.want)
			}
			for _, s := range tt.gone {
				// The freed session's handler ended the stream.
				for {
					_, err := s.Recv()
					if err == nil {
						continue
					}
					if status.Code(err) != codes.Canceled {
						t.Errorf("freed stream ended with %v, want CANCELED", err)
					}
					break
				}
			}
		})
	}
	if err := s5.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
}

// TestSidecarRestartFreesOtherIncarnations: a SCOPE_SIDECAR event frees the
// sessions of every incarnation but the one it names, and nothing else.
func TestSidecarRestartFreesOtherIncarnations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := start(t)
	old1 := join(t, ctx, c, "OLDINC01-1", "1")
	old2 := join(t, ctx, c, "OLDINC01-2", "3")
	live := join(t, ctx, c, "LIVEINC1-1", "1")
	// Not through hangup: no incarnation, never freed by an event.
	local, err := c.chat.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Send(&chatv1.ChatRequest{Text: "direct"}); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, ctx, c, 4)

	restart := &notifyv1.DisconnectEvent{EventId: "r1", Scope: notifyv1.Scope_SCOPE_SIDECAR,
		Reason: notifyv1.Reason_REASON_SIDECAR_RESTART, Initiator: notifyv1.Initiator_INITIATOR_SIDECAR, Incarnation: "LIVEINC1"}
	for _, name := range []string{"first", "again after a reconnection"} {
		if _, err := c.notify.Notify(ctx, &notifyv1.NotifyRequest{Events: []*notifyv1.DisconnectEvent{restart}}); err != nil {
			t.Fatalf("notify (%s): %v", name, err)
		}
		if n := sessions(t, ctx, c); n != 2 {
			t.Errorf("%s: sessions = %d, want 2 (the live incarnation's and the direct one)", name, n)
		}
	}
	for _, s := range []chatv1.ChatService_ChatClient{old1, old2} {
		if err := recvUntilEnd(s); status.Code(err) != codes.Canceled {
			t.Errorf("stream of the old incarnation ended with %v, want CANCELED", err)
		}
	}
	if err := live.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := local.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// recvUntilEnd reads s until it ends and returns the error that ended it.
func recvUntilEnd(s chatv1.ChatService_ChatClient) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// waitSessions waits until the app holds want sessions.
func waitSessions(t *testing.T, ctx context.Context, c clients, want int64) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n := sessions(t, ctx, c); n != want; n = sessions(t, ctx, c) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("sessions = %d, want %d: %v", n, want, ctx.Err())
		}
	}
}

func TestExamplePassesNotifyCheck(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results, err := check.Run(ctx, check.Options{Target: c.notifyAddr})
	if err != nil {
		t.Fatalf("notify check: %v", err)
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
}

// TestBehindTheSidecar runs the example behind the real sidecar binary: a
// client joins through it, its connection goes away, and the session is
// freed by the DisconnectNotify event alone.
func TestBehindTheSidecar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := start(t)
	sc := testtools.StartSidecar(t, c.appAddr, "--notify-addr", c.notifyAddr)

	conn, err := grpc.NewClient("passthrough:///"+sc.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := chatv1.NewChatServiceClient(conn).Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&chatv1.ChatRequest{Text: "hello through hangup"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetFrom() == "" || m.GetFrom() == "/0" {
		t.Fatalf("the app keyed the session on %q, want the sidecar's ids", m.GetFrom())
	}
	if n := sessions(t, ctx, c); n != 1 {
		t.Fatalf("%d sessions after joining, want 1", n)
	}
	_ = conn.Close() // the client goes away with its stream open

	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for sessions(t, ctx, c) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its client by 5s")
		}
		<-tick.C
	}
}
