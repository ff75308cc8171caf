package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// sessionClientEnv makes the test binary a session client (see
// runSessionClient): "ADDR SESSION".
const sessionClientEnv = "HANGUP_E2E_SESSION_CLIENT"

// runSessionClient is a grpc-go client process, as a mobile app would be:
// it opens FullDuplexCall through the sidecar with x-session-id, prints
// "open" once the app answered, and holds the stream until SIGTERM, when it
// half-closes and waits for the app to end the call. Killed, it leaves
// without a word.
func runSessionClient(spec string) int {
	addr, session, _ := strings.Cut(spec, " ")
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-session-id", session)
	s, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
	if err == nil {
		err = s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	}
	if err == nil {
		_, err = s.Recv()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("open")
	select {
	case <-term:
	case <-ctx.Done():
		return 1
	}
	if err := s.CloseSend(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "after half-close:", err)
		return 1
	}
	return 0
}

// startSessionClient re-executes the test binary as a session client of
// addr and waits until its stream is open.
func startSessionClient(t *testing.T, addr, session string) *testtools.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary to re-execute: %v", err)
	}
	t.Setenv(sessionClientEnv, addr+" "+session)
	p := testtools.StartProcess(t, context.Background(), exe, "-test.run=^$")
	waitOutput(t, p, "open")
	return p
}

// kill ends a client process with SIGKILL, as a phone that lost its
// network leaves: it says nothing (the kernel closes its socket). It
// returns when the signal was sent.
func kill(t *testing.T, p *testtools.Process) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL the client: %v", err)
	}
	<-p.Done()
	return at
}

// startGraceSidecar runs the built sidecar with reconnect grace on
// FullDuplexCall, and a receiver that has had the start-up event.
func startGraceSidecar(t *testing.T, appAddr, grace string) (*testtools.Sidecar, *demoapp.Receiver) {
	t.Helper()
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr,
		"--reconnect-grace", fullDuplex+"="+grace, "--session-header", "x-session-id")
	sidecarEvent(t, recv, 5*time.Second)
	return sc, recv
}

// TestReconnectGrace: a grpc-go client process with a session is killed
// mid-stream and a new process of the same session reconnects. Inside the
// grace the app gets one RESUMED event naming the old and the new stream
// and no CONNECTION_* event; outside it, the held events arrive when the
// grace expires, with their reason and detection time, and the late
// reconnection resumes nothing. Either way the app's handler is cancelled
// in band at once.
func TestReconnectGrace(t *testing.T) {
	t.Setenv(testtools.SidecarBinEnv, testtools.SidecarBin(t))
	t.Run("inside the grace", func(t *testing.T) {
		app, appAddr := startApp(t)
		sc, recv := startGraceSidecar(t, appAddr, "30s")
		old := startSessionClient(t, sc.Addr, "s-1")
		killed := kill(t, old)
		oldCall := waitCall(t, app, 5*time.Second)
		cancelled := oldCall.Ended.Sub(killed)
		t.Logf("the app's handler was cancelled in band %v after the client was killed (grace 30s)", cancelled)
		if !errors.Is(oldCall.Err, context.Canceled) || cancelled > 5*time.Second {
			t.Fatalf("old call ended with %v after %v, want cancelled in band at once", oldCall.Err, cancelled)
		}

		reconnect := startSessionClient(t, sc.Addr, "s-1")
		got := receive(t, recv, 1, 10*time.Second)[0]
		ev := got.Event
		t.Logf("RESUMED reached the app %v after the client was killed", got.At.Sub(killed))
		if ev.Scope != event.ScopeStream || ev.Reason != event.ReasonResumed || ev.ConnectionID != oldCall.ConnectionID ||
			ev.StreamID != oldCall.StreamID || ev.SessionKey != "s-1" || ev.Method != fullDuplex {
			t.Errorf("event %+v, want STREAM RESUMED of %s/%d, session s-1", ev, oldCall.ConnectionID, oldCall.StreamID)
		}
		// The new client half-closes: its call ends normally and names
		// the stream the event said resumed the session.
		if err := reconnect.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := reconnect.Wait(10 * time.Second); err != nil {
			t.Fatalf("the reconnected client: %v", err)
		}
		newCall := waitCall(t, app, 5*time.Second)
		if ev.ResumedConnectionID != newCall.ConnectionID || ev.ResumedStreamID != newCall.StreamID || newCall.ConnectionID == oldCall.ConnectionID {
			t.Errorf("RESUMED names %s/%d, the new call was %s/%d", ev.ResumedConnectionID, ev.ResumedStreamID, newCall.ConnectionID, newCall.StreamID)
		}
		if ev.ResumedAt.Before(ev.DetectedAt) || ev.DetectedAt.After(got.At) {
			t.Errorf("detected %v, resumed %v, received %v: want detected ≤ resumed", ev.DetectedAt, ev.ResumedAt, got.At)
		}
		nothingMore(t, recv, time.Second) // no CONNECTION_* event, for either stream or the connection
	})

	t.Run("reconnected before the silent client was found dead", func(t *testing.T) {
		// A phone that switched networks: the old connection goes silent
		// (the process is stopped; its kernel still acknowledges), the
		// client reconnects at once, and the sidecar finds the old one dead
		// only at its keepalive timeout, after the new stream opened.
		app, appAddr := startApp(t)
		recv, recvAddr := startReceiver(t, "127.0.0.1:0")
		sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--keepalive-time", "1s", "--keepalive-timeout", "1s",
			"--reconnect-grace", fullDuplex+"=30s", "--session-header", "x-session-id")
		sidecarEvent(t, recv, 5*time.Second)
		old := startSessionClient(t, sc.Addr, "s-5")
		silence(t, old.Cmd.Process)
		stopped := time.Now()
		startSessionClient(t, sc.Addr, "s-5")
		oldCall := waitCall(t, app, 10*time.Second) // cancelled in band at the keepalive timeout
		got := receive(t, recv, 1, 10*time.Second)[0]
		ev := got.Event
		t.Logf("old handler cancelled %v after the client went silent; RESUMED reached the app %v after", oldCall.Ended.Sub(stopped), got.At.Sub(stopped))
		if ev.Reason != event.ReasonResumed || ev.ConnectionID != oldCall.ConnectionID || ev.StreamID != oldCall.StreamID ||
			ev.ResumedConnectionID == "" || ev.ResumedConnectionID == oldCall.ConnectionID || !ev.ResumedAt.Before(ev.DetectedAt) {
			t.Errorf("event %+v, want RESUMED of %s/%d by the stream that opened before the loss was found", ev, oldCall.ConnectionID, oldCall.StreamID)
		}
		nothingMore(t, recv, time.Second) // no KEEPALIVE_TIMEOUT event
	})

	t.Run("outside the grace", func(t *testing.T) {
		const grace = 2 * time.Second
		app, appAddr := startApp(t)
		sc, recv := startGraceSidecar(t, appAddr, grace.String())
		old := startSessionClient(t, sc.Addr, "s-2")
		killed := kill(t, old)
		oldCall := waitCall(t, app, 5*time.Second)
		if !errors.Is(oldCall.Err, context.Canceled) || oldCall.Ended.Sub(killed) > grace {
			t.Fatalf("old call ended with %v after %v, want cancelled in band before the grace ends", oldCall.Err, oldCall.Ended.Sub(killed))
		}
		evs := receive(t, recv, 2, 10*time.Second)
		st, conn := evs[0].Event, evs[1].Event
		t.Logf("held events reached the app %v after the client was killed (grace %v); detected %v after",
			evs[0].At.Sub(killed), grace, st.DetectedAt.Sub(killed))
		if evs[0].At.Sub(killed) < grace-100*time.Millisecond {
			t.Errorf("the held event arrived %v after the kill, before the grace %v ended", evs[0].At.Sub(killed), grace)
		}
		if st.Scope != event.ScopeStream || (st.Reason != event.ReasonConnectionClosed && st.Reason != event.ReasonConnectionReset) ||
			st.ConnectionID != oldCall.ConnectionID || st.StreamID != oldCall.StreamID || st.SessionKey != "s-2" {
			t.Errorf("stream event %+v, want the original CONNECTION_CLOSED or _RESET of %s/%d", st, oldCall.ConnectionID, oldCall.StreamID)
		}
		if d := st.DetectedAt.Sub(killed); d > time.Second || d < -time.Second {
			t.Errorf("detected_at is %v from the kill, want the time of the loss, not of the release", d)
		}
		if conn.Scope != event.ScopeConnection || conn.Reason != st.Reason || conn.ConnectionID != st.ConnectionID {
			t.Errorf("connection event %+v, want %v of %s", conn, st.Reason, st.ConnectionID)
		}
		startSessionClient(t, sc.Addr, "s-2")
		nothingMore(t, recv, time.Second) // the late reconnection resumes nothing
	})

	t.Run("shutdown sends what is held", func(t *testing.T) {
		_, appAddr := startApp(t)
		sc, recv := startGraceSidecar(t, appAddr, "1h")
		kill(t, startSessionClient(t, sc.Addr, "s-3"))
		nothingMore(t, recv, 500*time.Millisecond) // held
		if err := sc.Process.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		evs := receive(t, recv, 2, 10*time.Second)
		if evs[0].Event.Scope != event.ScopeStream || evs[0].Event.SessionKey != "s-3" || !isConnectionLoss(evs[0].Event.Reason) ||
			evs[1].Event.Scope != event.ScopeConnection {
			t.Errorf("events at shutdown %+v, %+v; want the held stream and connection events", evs[0].Event, evs[1].Event)
		}
		if err := sc.Process.Wait(10 * time.Second); err != nil {
			t.Errorf("sidecar exit: %v", err)
		}
	})
}

// TestOldReceiverGetsResumed: a receiver generated from the first contract
// (test/e2e/oldreceiver) gets REASON_RESUMED as a number it does not know,
// acknowledges it, and keeps getting the events after it.
func TestOldReceiverGetsResumed(t *testing.T) {
	t.Setenv(testtools.SidecarBinEnv, testtools.SidecarBin(t))
	_, appAddr := startApp(t)
	old := startOldReceiver(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", old.addr,
		"--reconnect-grace", fullDuplex+"=30s", "--session-header", "x-session-id")
	kill(t, startSessionClient(t, sc.Addr, "s-4"))
	startSessionClient(t, sc.Addr, "s-4")
	c := openRawStream(t, sc.Addr) // no session: its reset is sent at once
	if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for len(reasons) < 2 {
		line := testtools.Receive(t, old.lines, 1, 10*time.Second)[0]
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "event" {
			t.Fatalf("old receiver wrote %q, want \"event ID SCOPE REASON CONN STREAM\"", line)
		}
		if f[2] != "3" { // not the SCOPE_SIDECAR event
			reasons = append(reasons, f[3])
		}
	}
	if reasons[0] != "12" || reasons[1] != "REASON_RST_STREAM" {
		t.Errorf("old receiver got reasons %v, want 12 (RESUMED, unknown to it) then REASON_RST_STREAM", reasons)
	}
}

func isConnectionLoss(r event.Reason) bool {
	return r == event.ReasonConnectionClosed || r == event.ReasonConnectionReset
}
