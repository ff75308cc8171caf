package proxy_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// logSignal is a slog handler that reports each record's message (info
// and above; dropped when the channel is full).
type logSignal struct{ msgs chan string }

func (h logSignal) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h logSignal) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Message:
	default:
	}
	return nil
}
func (h logSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h logSignal) WithGroup(string) slog.Handler      { return h }

// TestAppKilledMidStream kills the app's process (SIGKILL) under a real
// grpc-go client with a live bidi call that the app has answered. Nothing
// the app causes is a client disconnect: no event at all, and the client
// is told INTERNAL for its call (RST_STREAM(INTERNAL_ERROR), never
// REFUSED_STREAM, which would invite a retry of a call that ran) and
// GOAWAY. Before, the relay only closed the client's side.
func TestAppKilledMidStream(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testtools.FreePort(t))
	t.Setenv(appProcessEnv, addr) // the child inherits it
	app := testtools.StartProcess(t, testCtx(t), os.Args[0], "-test.run=^$")
	testtools.WaitTCP(t, addr, 30*time.Second, app.Done())

	logs := logSignal{msgs: make(chan string, 64)}
	r := startRelay(t, addr, func(c *proxy.Config) { c.Logger = slog.New(logs) })
	tc := client(t, r.addr)
	stream, err := tc.FullDuplexCall(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first answer: %v", err)
	}

	if err := app.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.Internal {
		t.Fatalf("the live call ended with %v, want INTERNAL (RST_STREAM(INTERNAL_ERROR) from the relay)", err)
	}
	// The client leaves after the GOAWAY; once the relay has logged the
	// connection closed, every event it would make has been made.
	for testtools.Receive(t, logs.msgs, 1, 10*time.Second)[0] != "connection closed" {
	}
	r.noEvents(t)
}
