package e2e

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestHalfOpenClient: a client whose packets are dropped mid-stream — no
// FIN, no RST, as a phone that lost coverage — is reported as
// KEEPALIVE_TIMEOUT within keepalive time + timeout + 1 s, and the app's
// handler is cancelled. The drop is real: iptables in a network namespace
// the test creates, where app, sidecar and client all run.
func TestHalfOpenClient(t *testing.T) {
	bin := testtools.SidecarBin(t) // built outside, shared with the namespaced run
	testtools.InNetns(t, func(t *testing.T) {
		if _, err := exec.LookPath("iptables"); err != nil {
			t.Fatalf("iptables is needed to drop the client's packets: run scripts/install-debs.sh: %v", err)
		}
		app, appAddr := startApp(t)
		recv, recvAddr := startReceiver(t, "127.0.0.1:0")
		sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr,
			"--keepalive-time", "1s", "--keepalive-timeout", "1s")
		c := openRawStream(t, sc.Addr)
		port := strconv.Itoa(c.Conn.LocalAddr().(*net.TCPAddr).Port)

		// Every packet to or from the client's port is dropped from now on;
		// on loopback both directions pass the INPUT chain.
		for _, dir := range []string{"--sport", "--dport"} {
			if out, err := exec.Command("iptables", "-A", "INPUT", "-p", "tcp", dir, port, "-j", "DROP").CombinedOutput(); err != nil {
				t.Fatalf("iptables %s %s: %v\n%s", dir, port, err, out)
			}
		}
		vanished := time.Now()

		got := receive(t, recv, 2, 10*time.Second)
		ev := got[0].Event
		if ev.Reason != event.ReasonKeepaliveTimeout || ev.Scope != event.ScopeStream || ev.Initiator != event.InitiatorSidecar {
			t.Fatalf("event %+v, want a KEEPALIVE_TIMEOUT stream event", ev)
		}
		if took := got[0].At.Sub(vanished); took > 3*time.Second {
			t.Errorf("the app was told after %v, want within time + timeout + 1s = 3s", took)
		}
		call := waitCall(t, app, 5*time.Second)
		if !errors.Is(call.Err, context.Canceled) || call.StreamID != ev.StreamID {
			t.Fatalf("handler %+v, want stream %d cancelled", call, ev.StreamID)
		}
		t.Logf("half-open client: app told after %v, handler cancelled after %v", got[0].At.Sub(vanished), call.Ended.Sub(vanished))
	}, "HANGUP_SIDECAR_BIN="+bin)
}
