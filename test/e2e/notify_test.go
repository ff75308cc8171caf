package e2e

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestEventsReachTheApp ends a client in each way through the real binary
// and checks that the app's DisconnectNotify receives exactly the expected
// events, naming the stream its handler saw.
func TestEventsReachTheApp(t *testing.T) {
	tests := []struct {
		name   string
		leave  func(*h2raw.Client) error
		reason event.Reason
		who    event.Initiator
		code   http2.ErrCode
		debug  string
		conn   bool // a SCOPE_CONNECTION event follows
	}{
		{"client cancels", func(c *h2raw.Client) error { return c.Framer.WriteRSTStream(1, http2.ErrCodeCancel) },
			event.ReasonRSTStream, event.InitiatorClient, http2.ErrCodeCancel, "", false},
		{"client closes", func(c *h2raw.Client) error { return c.Close() },
			event.ReasonConnectionClosed, event.InitiatorClient, 0, "", true},
		{"client resets", func(c *h2raw.Client) error { return c.Reset() },
			event.ReasonConnectionReset, event.InitiatorClient, 0, "", true},
		{"client GOAWAY", func(c *h2raw.Client) error {
			if err := c.Framer.WriteGoAway(0, http2.ErrCodeNo, []byte("shutting down")); err != nil {
				return err
			}
			return c.Close()
		}, event.ReasonGoAway, event.InitiatorClient, http2.ErrCodeNo, "shutting down", true},
		{"malformed frame", func(c *h2raw.Client) error { return c.Framer.WriteContinuation(7, true, []byte{0x82}) },
			event.ReasonProtocolError, event.InitiatorSidecar, http2.ErrCodeProtocol, "CONTINUATION without HEADERS", true},
	}
	app, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--notify-headers", "x-tenant,x-user")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openRawStream(t, sc.Addr, "x-tenant", "acme", "x-other", "not copied")
			if err := tt.leave(c); err != nil {
				t.Fatal(err)
			}
			call := waitCall(t, app, 5*time.Second)
			if !errors.Is(call.Err, context.Canceled) {
				t.Errorf("handler ended with %v, want cancelled", call.Err)
			}
			want := 1
			if tt.conn {
				want = 2
			}
			got := receive(t, recv, want, 5*time.Second)
			ev := got[0].Event
			if ev.Scope != event.ScopeStream || ev.Reason != tt.reason || ev.Initiator != tt.who ||
				ev.HTTP2ErrorCode != uint32(tt.code) || ev.GoAwayDebug != tt.debug || ev.Method != fullDuplex {
				t.Errorf("stream event %+v", ev)
			}
			if ev.ConnectionID != call.ConnectionID || ev.StreamID != call.StreamID {
				t.Errorf("event names %s/%d; the handler saw %s/%d", ev.ConnectionID, ev.StreamID, call.ConnectionID, call.StreamID)
			}
			if len(ev.Headers) != 1 || ev.Headers["x-tenant"] != "acme" {
				t.Errorf("event headers %v, want only the allow-listed x-tenant", ev.Headers)
			}
			if ev.ID == "" || ev.PeerAddress == "" || ev.DetectedAt.IsZero() {
				t.Errorf("event lacks id, peer or time: %+v", ev)
			}
			if tt.conn {
				if ce := got[1].Event; ce.Scope != event.ScopeConnection || ce.Reason != tt.reason || ce.ConnectionID != ev.ConnectionID || ce.ID == ev.ID {
					t.Errorf("connection event %+v", ce)
				}
			}
			nothingMore(t, recv, 100*time.Millisecond)
		})
	}
	t.Run("normal completion", func(t *testing.T) {
		c := grpcClient(t, sc.Addr)
		if _, err := c.UnaryCall(ctxT(t, 10*time.Second), &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
			t.Fatal(err)
		}
		nothingMore(t, recv, 200*time.Millisecond)
	})
}

// TestReceiverDownThenUp: the app's receiver is down while clients
// disconnect and comes up 10 s later; every event arrives, duplicates only
// with the same id.
func TestReceiverDownThenUp(t *testing.T) {
	_, appAddr := startApp(t)
	recvAddr := testtools.FreeAddr(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr)
	const n = 20
	for range n {
		c := openRawStream(t, sc.Addr)
		if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	down := time.NewTimer(10 * time.Second)
	<-down.C // the outage the test is about, not a wait for a condition
	up := time.Now()
	recv, _ := startReceiver(t, recvAddr)
	got := receive(t, recv, n, 10*time.Second)
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.Event.ID] = true
		if r.At.Sub(up) > 3*time.Second {
			t.Errorf("event %s arrived %v after the receiver came up, want within ~2s", r.Event.ID, r.At.Sub(up))
		}
	}
	// Duplicates (at-least-once) may follow, with the same ids only.
	for {
		select {
		case r := <-recv.Events:
			if !seen[r.Event.ID] {
				t.Fatalf("event %s beyond the %d expected", r.Event.ID, n)
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
	if len(seen) != n {
		t.Fatalf("received %d distinct events, want %d", len(seen), n)
	}
}

// TestFailingReceiverIsRetried: a receiver that fails its first calls gets
// the events once it answers OK.
func TestFailingReceiverIsRetried(t *testing.T) {
	_, appAddr := startApp(t)
	var calls atomic.Int32
	failFirst := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if calls.Add(1) <= 3 {
			return nil, status.Error(codes.Unavailable, "warming up")
		}
		return h(ctx, req)
	})
	recv, recvAddr := startReceiver(t, "127.0.0.1:0", failFirst)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr)
	c := openRawStream(t, sc.Addr)
	if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	got := receive(t, recv, 1, 10*time.Second)
	if got[0].Event.Reason != event.ReasonRSTStream || calls.Load() < 4 {
		t.Fatalf("event %+v after %d calls, want RST_STREAM after 3 failures", got[0].Event, calls.Load())
	}
}

// TestSlowReceiverDoesNotSlowTheRelay: a receiver that takes 5 s per call
// leaves the relay's latency for other clients as it was without it.
func TestSlowReceiverDoesNotSlowTheRelay(t *testing.T) {
	_, appAddr := startApp(t)
	stall := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		return h(ctx, req)
	})
	_, slowAddr := startReceiver(t, "127.0.0.1:0", stall)
	_, fastAddr := startReceiver(t, "127.0.0.1:0")

	measure := func(notifyAddr string) time.Duration {
		sc := testtools.StartSidecar(t, appAddr, "--notify-addr", notifyAddr, "--notify-timeout", "6s")
		cl := grpcClient(t, sc.Addr)
		ctx := ctxT(t, 30*time.Second)
		var lat []time.Duration
		for i := range 300 {
			if i%10 == 0 { // a disconnect now and then keeps the notifier busy
				c := openRawStream(t, sc.Addr)
				_ = c.Reset()
			}
			start := time.Now()
			if _, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		return percentile(lat, 0.5)
	}
	fast := measure(fastAddr)
	slow := measure(slowAddr)
	t.Logf("relay p50 latency: %v with a fast receiver, %v with one that takes 5 s per call", fast, slow)
	if slow > 3*fast+2*time.Millisecond {
		t.Fatalf("a slow receiver slowed the relay: p50 %v, against %v", slow, fast)
	}
}
