package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/notify/check"
)

// TestExamplePassesWatchCheck runs notify-check's Watch checks against the
// example in --watch mode (no Notify server).
func TestExamplePassesWatchCheck(t *testing.T) {
	addr := testtools.FreeAddr(t)
	startWith(t, slog.New(slog.DiscardHandler), false, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := check.RunWatch(ctx, check.WatchOptions{Listen: addr, ConnectTimeout: 20 * time.Second, Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("watch check: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no watch check ran")
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
}

// TestBehindTheSidecarWatch runs the example in --watch mode behind the
// real sidecar binary with push off: a client joins, goes away, and the
// example reads the event naming its session from Watch. (Which frees the
// session first, that event or the handler's end on the sidecar's
// RST_STREAM, is a race; either is right.)
func TestBehindTheSidecarWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watched := make(chan string, 16)
	watchAddr := testtools.FreeAddr(t)
	c := startWith(t, slog.New(watchedHandler(watched)), false, watchAddr)
	sc := testtools.StartSidecar(t, c.appAddr, "--notify-addr", "", "--watch-addr", watchAddr)

	conn, err := grpc.NewClient("passthrough:///"+sc.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := chatv1.NewChatServiceClient(conn).Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&chatv1.ChatRequest{Text: "hello through hangup, watched"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close() // the client goes away with its stream open

	got := testtools.Receive(t, watched, 1, 10*time.Second)[0]
	if got != m.GetFrom() {
		t.Fatalf("the example watched an event for session %s, want the client's %s", got, m.GetFrom())
	}
	waitSessions(t, ctx, c, 0)
}

// watchedHandler is a slog handler that sends the session named by every
// SCOPE_STREAM "watched event" record to ch, dropping when ch is full.
type watchedHandler chan<- string

func (h watchedHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h watchedHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h watchedHandler) WithGroup(string) slog.Handler            { return h }
func (h watchedHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "watched event" {
		return nil
	}
	var scope, session string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "scope":
			scope = a.Value.String()
		case "session":
			session = a.Value.String()
		}
		return true
	})
	if scope == notifyv1.Scope_SCOPE_STREAM.String() {
		select {
		case h <- session:
		default:
		}
	}
	return nil
}
