package e2e

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestSidecarPolicyReasons runs the sidecar's own reasons through the real
// binary: each ends a stream the app still serves, and the app is told why.
func TestSidecarPolicyReasons(t *testing.T) {
	tests := []struct {
		name   string
		flags  []string
		act    func(t *testing.T, sc *testtools.Sidecar, c *h2raw.Client)
		reason event.Reason
		code   http2.ErrCode
		debug  string
	}{
		{"ping flood", nil, func(t *testing.T, _ *testtools.Sidecar, c *h2raw.Client) {
			for i := range 10 {
				if c.Framer.WritePing(false, [8]byte{byte(i)}) != nil {
					break
				}
			}
		}, event.ReasonPingAbuse, http2.ErrCodeEnhanceYourCalm, "too_many_pings"},
		{"max connection age", []string{"--max-connection-age", "1s", "--max-connection-age-grace", "1s", "--keepalive-timeout", "1s"},
			func(t *testing.T, _ *testtools.Sidecar, c *h2raw.Client) { answerPings(t, c) }, event.ReasonMaxAge, 0, "max_age"},
		{"SIGTERM drain", []string{"--drain-timeout", "1s"}, func(t *testing.T, sc *testtools.Sidecar, _ *h2raw.Client) {
			if err := sc.Process.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}, event.ReasonShutdown, 0, "shutdown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, appAddr := startApp(t)
			recv, recvAddr := startReceiver(t, "127.0.0.1:0")
			sc := testtools.StartSidecar(t, appAddr, append([]string{"--notify-addr", recvAddr}, tt.flags...)...)
			c := openRawStream(t, sc.Addr)
			tt.act(t, sc, c)
			ev := receive(t, recv, 1, 10*time.Second)[0].Event
			if ev.Reason != tt.reason || ev.Initiator != event.InitiatorSidecar || ev.StreamID != 1 ||
				ev.HTTP2ErrorCode != uint32(tt.code) || ev.GoAwayDebug != tt.debug {
				t.Fatalf("event %+v, want %v (%v %q) for stream 1", ev, tt.reason, tt.code, tt.debug)
			}
			if call := waitCall(t, app, 5*time.Second); !errors.Is(call.Err, context.Canceled) {
				t.Fatalf("handler ended with %v, want cancelled", call.Err)
			}
			if tt.reason == event.ReasonShutdown {
				if err := sc.Process.Wait(10 * time.Second); err != nil {
					t.Fatalf("sidecar after SIGTERM: %v", err)
				}
			}
		})
	}
}

// answerPings acknowledges every PING the client receives, as a live
// client does, until the connection ends.
func answerPings(t *testing.T, c *h2raw.Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := c.Framer.ReadFrame()
			if err != nil {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				_ = c.Framer.WritePing(true, p.Data)
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
}
