package proxy_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// shortKeepalive is the smallest policy users can set: 1s everywhere.
func shortKeepalive(mut func(*keepalive.Config)) func(*proxyConfig) {
	return func(c *proxyConfig) {
		c.Keepalive = keepalive.DefaultConfig()
		c.Keepalive.Time, c.Keepalive.Timeout = time.Second, time.Second
		if mut != nil {
			mut(&c.Keepalive)
		}
	}
}

// isGoAway matches a GOAWAY frame with code and debug data.
func isGoAway(code http2.ErrCode, debug string) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		g, ok := f.(*http2.GoAwayFrame)
		return ok && g.ErrCode == code && string(g.DebugData()) == debug
	}
}

// TestKeepaliveTimeout: a client that stops answering (its process is
// frozen; the kernel still ACKs TCP) is found dead within time + timeout,
// and the app's handler is cancelled.
func TestKeepaliveTimeout(t *testing.T) {
	t.Parallel()
	app, appAddr := startApp(t)
	r := startRelay(t, appAddr, shortKeepalive(nil))
	c := openRawStream(t, r.addr)
	defer c.Close()
	silent := time.Now() // from now on the client reads nothing and answers nothing
	events := r.waitEvents(t, 2, 5*time.Second)
	if e := events[0]; e.Reason != event.ReasonKeepaliveTimeout || e.Scope != event.ScopeStream || e.Initiator != event.InitiatorSidecar {
		t.Fatalf("event %+v, want a KEEPALIVE_TIMEOUT stream event by the sidecar", e)
	}
	if e := events[1]; e.Reason != event.ReasonKeepaliveTimeout || e.Scope != event.ScopeConnection {
		t.Fatalf("event %+v, want the KEEPALIVE_TIMEOUT connection event", e)
	}
	if took := events[0].DetectedAt.Sub(silent); took > 3*time.Second {
		t.Errorf("detected after %v, want within time + timeout + 1s = 3s", took)
	}
	call := waitCall(t, app, 5*time.Second)
	if !errors.Is(call.Err, context.Canceled) {
		t.Fatalf("handler ended with %v, want cancelled", call.Err)
	}
	t.Logf("silent client found dead after %v; handler cancelled after %v", events[0].DetectedAt.Sub(silent), call.Ended.Sub(silent))
}

// TestKeepalivePingsAreAnswered: a live client that answers the sidecar's
// PINGs keeps its connection, and the ACKs never reach the app.
func TestKeepalivePingsAreAnswered(t *testing.T) {
	t.Parallel()
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr, shortKeepalive(nil))
	c := openRawStream(t, r.addr)
	defer c.Close()
	pings := 0
	_, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool {
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pings++
			_ = c.Framer.WritePing(true, p.Data)
		}
		return pings == 3
	})
	if err != nil {
		t.Fatalf("waiting for three keepalive PINGs: %v", err)
	}
	r.noEvents(t)
	// The stream still works: the app answers.
	if err := c.SendMessage(1, echoMsg(t), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameData }); err != nil {
		t.Fatalf("stream dead after answering pings: %v", err)
	}
}

// TestPingAbuse: a client pinging far more often than keepalive-min-time
// gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and a PING_ABUSE event.
func TestPingAbuse(t *testing.T) {
	t.Parallel()
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := openRawStream(t, r.addr)
	defer c.Close()
	for i := range 10 {
		if err := c.Framer.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // the sidecar may already have closed
		}
	}
	if _, err := c.ReadUntil(5*time.Second, isGoAway(http2.ErrCodeEnhanceYourCalm, "too_many_pings")); err != nil {
		t.Fatalf("no GOAWAY too_many_pings: %v", err)
	}
	ev := r.waitEvents(t, 2, 5*time.Second)
	if ev[0].Reason != event.ReasonPingAbuse || ev[0].HTTP2ErrorCode != uint32(http2.ErrCodeEnhanceYourCalm) || ev[0].GoAwayDebug != "too_many_pings" {
		t.Fatalf("event %+v, want PING_ABUSE", ev[0])
	}
}

// TestGracefulGoAways checks the two-phase GOAWAY of max-idle and max-age
// and what their end means for open streams.
func TestGracefulGoAways(t *testing.T) {
	t.Run("max idle closes a connection without streams and reports nothing", func(t *testing.T) {
		t.Parallel()
		_, appAddr := startApp(t)
		r := startRelay(t, appAddr, shortKeepalive(func(k *keepalive.Config) { k.MaxConnectionIdle = time.Second }))
		c, err := h2raw.Dial(r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectTwoPhase(t, c, "max_idle", 0)
		r.noEvents(t)
	})
	t.Run("max age cuts off a stream that outlives the grace", func(t *testing.T) {
		t.Parallel()
		app, appAddr := startApp(t)
		r := startRelay(t, appAddr, shortKeepalive(func(k *keepalive.Config) {
			k.MaxConnectionAge, k.MaxConnectionAgeGrace = time.Second, time.Second
		}))
		c := openRawStream(t, r.addr)
		defer c.Close()
		expectTwoPhase(t, c, "max_age", 1)
		ev := r.waitEvents(t, 1, 5*time.Second)
		if ev[0].Reason != event.ReasonMaxAge || ev[0].Initiator != event.InitiatorSidecar || ev[0].StreamID != 1 {
			t.Fatalf("event %+v, want MAX_AGE for stream 1", ev[0])
		}
		if call := waitCall(t, app, 5*time.Second); !errors.Is(call.Err, context.Canceled) {
			t.Fatalf("handler ended with %v, want cancelled", call.Err)
		}
	})
}

// expectTwoPhase reads GOAWAY(2^31-1) + PING, answers the PING, then reads
// the final GOAWAY with lastStream and the connection's end.
func expectTwoPhase(t *testing.T, c *h2raw.Client, debug string, lastStream uint32) {
	t.Helper()
	type goAway struct {
		last  uint32
		code  http2.ErrCode
		debug string
	}
	var first *goAway
	var ping [8]byte
	_, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if first == nil {
				first = &goAway{f.LastStreamID, f.ErrCode, string(f.DebugData())}
			}
		case *http2.PingFrame:
			if first != nil && !f.IsAck() {
				ping = f.Data
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("waiting for phase 1: %v", err)
	}
	if *first != (goAway{1<<31 - 1, http2.ErrCodeNo, debug}) {
		t.Fatalf("phase 1 GOAWAY %+v, want 2^31-1 NO_ERROR %q", *first, debug)
	}
	if err := c.Framer.WritePing(true, ping); err != nil {
		t.Fatal(err)
	}
	f, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameGoAway })
	if err != nil {
		t.Fatalf("waiting for the final GOAWAY: %v", err)
	}
	if g := f.(*http2.GoAwayFrame); g.LastStreamID != lastStream {
		t.Fatalf("final GOAWAY last-stream-id %d, want %d", g.LastStreamID, lastStream)
	}
	if _, err := c.ReadUntil(5*time.Second, func(http2.Frame) bool { return false }); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after the drain: %v", err)
	}
}
