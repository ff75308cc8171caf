package mesh

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestAppExitsFirst: the app stops while a call is open (a pod whose app
// container ends before its sidecar, or an app that crashes and restarts).
// The open call fails at the client (UNAVAILABLE), hangup reports no client
// disconnect (the app ended it), calls made while the app is down fail
// fast, and once the app listens again calls succeed through the same
// sidecar and front proxy, with nothing restarted.
func TestAppExitsFirst(t *testing.T) {
	bin := testtools.SidecarBin(t)
	testtools.InNetns(t, func(t *testing.T) {
		c := startChain(t, nghttpx)
		cl := c.client(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := openStream(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		c.appGS.Stop() // closes the app's connections and listener at once
		testtools.Receive(t, c.app.Ended, 1, 5*time.Second)
		_, err = s.Recv()
		if code := status.Code(err); code != codes.Unavailable && code != codes.Internal {
			t.Errorf("the open call ended with %v, want UNAVAILABLE (or INTERNAL) at the client", err)
		}
		t.Logf("app exited: the open call ended at the client with %v", err)
		if _, err := cl.EmptyCall(ctxT(t, 5*time.Second), &testgrpc.Empty{}); status.Code(err) != codes.Unavailable {
			t.Errorf("a call with the app down: %v, want UNAVAILABLE", err)
		}

		c.startApp(t, c.appAddr)
		if err := waitCallOK(t, cl, 10*time.Second); err != nil {
			t.Fatalf("calls after the app came back: %v", err)
		}
		// By now every event of the app's exit has been delivered (the
		// receiver is on loopback); there must be none.
		select {
		case e := <-c.events:
			t.Fatalf("event %+v: the app went away, not the client", e.Event)
		default:
		}
	}, testtools.SidecarBinEnv+"="+bin)
}

// waitCallOK retries a unary call until it succeeds or d passes: the
// client's channel reconnects with backoff after the failures before.
func waitCallOK(t *testing.T, cl testgrpc.TestServiceClient, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if _, err = cl.EmptyCall(ctx, &testgrpc.Empty{}); err == nil {
			return nil
		}
		tick := time.NewTimer(50 * time.Millisecond)
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		tick.Stop()
	}
	return errors.Join(err, ctx.Err())
}

// waitRefused waits until nothing listens on addr any more.
func waitRefused(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after %v", addr, d)
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
}

// TestSidecarExitsFirst: hangup gets SIGTERM while a call is open (a pod
// whose sidecar is stopped before its app: no native sidecar, no preStop).
// It sends the front proxy a graceful GOAWAY; the open call goes on
// working for --drain-timeout; when the drain ends, the call is cancelled
// at the app and reported with reason SHUTDOWN, so the app is never left
// holding a stream nobody can reach.
func TestSidecarExitsFirst(t *testing.T) {
	bin := testtools.SidecarBin(t)
	testtools.InNetns(t, func(t *testing.T) {
		const drain = 2 * time.Second
		c := startChain(t, nghttpx, "--drain-timeout", drain.String())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := openStream(ctx, c.client(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.sidecar.Process.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitRefused(t, c.sidecar.Addr, 5*time.Second)
		// The listener is closed, the open call still works.
		req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}
		if err := s.Send(req); err != nil {
			t.Fatalf("send during the drain: %v", err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("receive during the drain: %v", err)
		}
		ev := testtools.Receive(t, c.events, 1, drain+5*time.Second)[0].Event
		if ev.Reason != event.ReasonShutdown || ev.Initiator != event.InitiatorSidecar || ev.Scope != event.ScopeStream {
			t.Fatalf("event %+v, want a SHUTDOWN stream event from the sidecar", ev)
		}
		call := testtools.Receive(t, c.app.Ended, 1, 5*time.Second)[0]
		if !errors.Is(call.Err, context.Canceled) || call.StreamID != ev.StreamID {
			t.Fatalf("handler %+v, want stream %d cancelled", call, ev.StreamID)
		}
		if err := c.sidecar.Process.Wait(5 * time.Second); err != nil {
			t.Errorf("sidecar exit after SIGTERM: %v", err)
		}
	}, testtools.SidecarBinEnv+"="+bin)
}
