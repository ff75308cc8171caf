package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// restartBound is how soon after a restarted sidecar is started the app
// must know that every earlier incarnation is gone (issue 13).
const restartBound = time.Second

// TestSidecarKilledAndRestarted: the built sidecar is killed with SIGKILL
// while a client's stream is open, so it cannot report anything; the
// process started in its place tells the app, within a second of its start,
// which incarnation is live, and the stream the app held belongs to another
// one.
func TestSidecarKilledAndRestarted(t *testing.T) {
	// Build once, so that the restart below times the process, not a build.
	t.Setenv(testtools.SidecarBinEnv, testtools.SidecarBin(t))
	app, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")

	first := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr)
	inc1 := sidecarEvent(t, recv, 5*time.Second).Event.Incarnation
	c := openRawStream(t, first.Addr)

	if err := first.Process.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL the sidecar: %v", err)
	}
	<-first.Process.Done()
	_ = c.Close()
	// The kernel closed the dead sidecar's connection to the app, so the
	// handler ends; its ids say which incarnation held the stream.
	held := waitCall(t, app, 5*time.Second)
	if got := event.IncarnationOf(held.ConnectionID); got != inc1 {
		t.Fatalf("the app's stream had connection id %q, of incarnation %q; the first sidecar named %q live", held.ConnectionID, got, inc1)
	}

	start := time.Now()
	second := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr)
	told := sidecarEvent(t, recv, 5*time.Second)
	took := told.At.Sub(start)
	t.Logf("the app was told %v after the restarted sidecar was started", took)
	if took > restartBound {
		t.Errorf("the app was told about the restart %v after the new sidecar was started, want within %v", took, restartBound)
	}
	inc2 := told.Event.Incarnation
	if inc2 == "" || inc2 == inc1 {
		t.Fatalf("the restarted sidecar named incarnation %q live; want a new one (the killed one was %q)", inc2, inc1)
	}
	if told.Event.Scope != event.ScopeSidecar || told.Event.Reason != event.ReasonSidecarRestart || told.Event.ConnectionID != "" {
		t.Errorf("restart event = %+v, want SCOPE_SIDECAR, SIDECAR_RESTART, no connection", told.Event)
	}
	if recv.Live() != inc2 {
		t.Errorf("receiver's live incarnation = %q, want %q", recv.Live(), inc2)
	}

	// A stream through the new process carries the new incarnation.
	c2 := openRawStream(t, second.Addr)
	_ = c2.Reset()
	ev := receive(t, recv, 1, 5*time.Second)[0].Event
	if got := event.IncarnationOf(ev.ConnectionID); got != inc2 || ev.Incarnation != inc2 {
		t.Errorf("event of the new process: connection %q (incarnation %q), incarnation field %q; want %q", ev.ConnectionID, got, ev.Incarnation, inc2)
	}
}

// sidecarEvent waits for the next SCOPE_SIDECAR event.
func sidecarEvent(t *testing.T, r *demoapp.Receiver, d time.Duration) demoapp.Received {
	t.Helper()
	return testtools.Receive(t, r.Sidecar, 1, d)[0]
}
