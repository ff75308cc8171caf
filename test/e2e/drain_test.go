package e2e

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestDrainEndpoint is the app's preStop hook on the built binary: GET
// /drain sends a grpc-go client the graceful GOAWAY, cuts off its stream
// when --drain-timeout ends, and answers only once the app, still running,
// has received the SHUTDOWN event; the sidecar then keeps running until
// SIGTERM, as a native sidecar must while the kubelet stops the app.
func TestDrainEndpoint(t *testing.T) {
	const drainTimeout = time.Second
	app, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--drain-timeout", drainTimeout.String())

	stream, err := grpcClient(t, sc.Addr).FullDuplexCall(ctxT(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("the stream's first answer: %v", err)
	}

	start := time.Now()
	code, body := get(t, "http://"+sc.AdminAddr+"/drain", drainTimeout+10*time.Second)
	took := time.Since(start)
	if code != http.StatusOK {
		t.Fatalf("GET /drain: %d %q; want 200", code, body)
	}
	if took < drainTimeout {
		t.Errorf("GET /drain answered after %v, before the drain timeout %v ended", took, drainTimeout)
	}
	// The answer comes after the delivery: the event is already there.
	var shutdown *event.Event
	for shutdown == nil {
		select {
		case r := <-recv.Events:
			if r.Event.Reason == event.ReasonShutdown && r.Event.StreamID == 1 {
				shutdown = &r.Event
			}
		default:
			t.Fatalf("GET /drain answered %v after the request, but the app has no SHUTDOWN event for stream 1", took)
		}
	}
	if shutdown.Initiator != event.InitiatorSidecar || shutdown.GoAwayDebug != "shutdown" {
		t.Errorf("event %+v; want initiator SIDECAR and GOAWAY debug \"shutdown\"", *shutdown)
	}
	if call := waitCall(t, app, 5*time.Second); call.Err == nil {
		t.Errorf("the app's handler ended without an error; want it cancelled by the sidecar's RST_STREAM")
	}
	_, err = stream.Recv()
	if s, _ := status.FromError(err); s.Code() != codes.Unavailable || !strings.Contains(strings.ToLower(s.Message()), "goaway") {
		t.Errorf("the client's stream ended with %v; want UNAVAILABLE after the sidecar's GOAWAY", err)
	}

	// The line is written before /drain answers, but reaches the test
	// through the process's pipe: wait for it.
	waitFor(t, 5*time.Second, "the sidecar's log saying the drain is over with every event delivered", func() bool {
		return strings.Contains(sc.Process.Output(), "drain over: the app acknowledged every event")
	})
	// Drained, the sidecar still runs and answers: a second request (a
	// hook retried) joins the finished drain.
	select {
	case <-sc.Process.Done():
		t.Fatalf("the sidecar exited after /drain: %v\n%s", sc.Process.Err(), sc.Process.Output())
	default:
	}
	if code, body := get(t, "http://"+sc.AdminAddr+"/drain", 5*time.Second); code != http.StatusOK {
		t.Errorf("a second GET /drain: %d %q; want 200 at once", code, body)
	}
	if err := sc.Process.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := sc.Process.Wait(5 * time.Second); err != nil {
		t.Fatalf("sidecar after SIGTERM, drained: %v", err)
	}
	t.Logf("GET /drain answered %v after the request (drain timeout %v)", took.Round(time.Millisecond), drainTimeout)
}

// get does a GET bounded by d and returns the status and body.
func get(t *testing.T, url string, d time.Duration) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: d}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	c.CloseIdleConnections()
	return resp.StatusCode, string(b)
}
