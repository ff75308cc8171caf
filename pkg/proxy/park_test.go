package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// rawApp accepts connections and holds them without a goroutine each, so
// that the goroutines a test counts are the relay's.
type rawApp struct {
	addr  string
	conns chan net.Conn
}

func startRawApp(t *testing.T) *rawApp {
	t.Helper()
	ln := listen(t)
	a := &rawApp{addr: ln.Addr().String(), conns: make(chan net.Conn, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(a.conns)
		for c := range a.conns {
			_ = c.Close()
		}
	})
	return a
}

// next returns the app's side of the next relayed connection. The test
// closes it when it ends: an unreachable socket would be closed by its
// finalizer, and the relay would see the app leave.
func (a *rawApp) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-a.conns:
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not dial the app")
		return nil
	}
}

// waitGoroutines waits until at most n goroutines run.
func waitGoroutines(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after %v, want at most %d", runtime.NumGoroutine(), d, n)
		}
		runtime.Gosched()
	}
}

// waitFrame reads frames from the app's side until one of type ft.
func waitFrame(t *testing.T, c net.Conn, ft http2.FrameType) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	fr := http2.NewFramer(io.Discard, c)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read the relayed frames: %v", err)
		}
		if f.Header().Type == ft {
			return
		}
	}
}

// readPreface reads the client preface the relay sends the app.
func readPreface(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
		t.Fatalf("read the preface: %v", err)
	}
}

// TestIdleConnectionsHoldNoGoroutine: quiet connections park, so they run
// no goroutine, and a parked connection still relays and still reports its
// client's loss.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	skipWithoutParking(t)
	const n = 50
	app := startRawApp(t)
	r := startRelay(t, app.addr)
	base := runtime.NumGoroutine()

	clients := make([]*h2raw.Client, n)
	appSides := make([]net.Conn, n)
	for i := range n {
		c, err := h2raw.Dial(r.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		clients[i] = c
		appSides[i] = app.next(t)
		readPreface(t, appSides[i])
		waitFrame(t, appSides[i], http2.FrameSettings)
	}
	// Without parking each connection would hold two goroutines; the
	// poller's own goroutine is the one allowed.
	waitGoroutines(t, base+1, 5*time.Second)

	for i, c := range clients {
		if err := c.Framer.WritePing(false, [8]byte{'p', 'a', 'r', 'k'}); err != nil {
			t.Fatal(err)
		}
		waitFrame(t, appSides[i], http2.FramePing)
	}
	waitGoroutines(t, base+1, 5*time.Second)

	for _, c := range clients {
		tc := c.Conn.(*net.TCPConn)
		_ = tc.SetLinger(0)
		_ = tc.Close()
	}
	for _, ev := range r.waitEvents(t, n, 10*time.Second) {
		if ev.Reason != event.ReasonConnectionReset {
			t.Errorf("event %s: reason %v, want CONNECTION_RESET", ev.ID, ev.Reason)
		}
	}
}

// closedLog collects the relay's "connection closed" log records.
type closedLog chan slog.Record

func (closedLog) Enabled(context.Context, slog.Level) bool { return true }
func (l closedLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "connection closed" {
		l <- r
	}
	return nil
}
func (l closedLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l closedLog) WithGroup(string) slog.Handler      { return l }

// TestLingerEndsAParkedDirection: once the app ends its side, the client's
// direction gets Linger to finish even while it is parked, and then the
// connection closes although the client never does.
func TestLingerEndsAParkedDirection(t *testing.T) {
	skipWithoutParking(t)
	app := startRawApp(t)
	closed := make(closedLog, 1)
	const linger = 300 * time.Millisecond
	r := startRelay(t, app.addr, func(c *proxy.Config) {
		c.Linger = linger
		c.Logger = slog.New(closed)
	})
	c, err := h2raw.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	appSide := app.next(t)
	readPreface(t, appSide)
	waitFrame(t, appSide, http2.FrameSettings)

	start := time.Now()
	_ = appSide.Close()
	select {
	case rec := <-closed:
		if took := time.Since(start); took < linger {
			t.Errorf("closed %v after the app, before the %v linger", took, linger)
		}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "ended" && a.Value.String() != "app closed" {
				t.Errorf("ended %q, want %q", a.Value.String(), "app closed")
			}
			return true
		})
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not close after the linger")
	}
}

// skipWithoutParking skips a test of parked sockets where they cannot park
// (not Linux, or the hangup_portable fallback forced).
func skipWithoutParking(t *testing.T) {
	t.Helper()
	if !park.Supported {
		t.Skip("sockets cannot park: the portable fallback is built in")
	}
}
