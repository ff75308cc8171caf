package proxy_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestAbuseDefences plays one attack per test on one connection and checks
// that it ends with GOAWAY carrying the right code, a PROTOCOL_ERROR event,
// bounded memory, and that a well-behaved client on another connection
// keeps getting answers.
func TestAbuseDefences(t *testing.T) {
	tests := []struct {
		name   string
		attack func(c *h2raw.Client) error
		code   http2.ErrCode
		kind   string
	}{
		{"rapid reset", func(c *h2raw.Client) error {
			for i := uint32(3); i < 3+2*1000; i += 2 {
				if err := c.OpenStream(i, h2raw.GRPCRequest(fullDuplex)); err != nil {
					return err
				}
				if err := c.Framer.WriteRSTStream(i, http2.ErrCodeCancel); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeEnhanceYourCalm, "rapid_reset"},
		{"CONTINUATION flood", func(c *h2raw.Client) error {
			if err := c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: c.Encode(h2raw.GRPCRequest(fullDuplex)...)}); err != nil {
				return err
			}
			junk := make([]byte, 16000)
			for range 1000 { // 16 MB, far past the limit
				if err := c.Framer.WriteContinuation(3, false, junk); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeEnhanceYourCalm, "header_list_too_large"},
		{"SETTINGS flood", func(c *h2raw.Client) error {
			for range 1000 {
				if err := c.Framer.WriteSettings(); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeEnhanceYourCalm, "settings_flood"},
		{"empty DATA flood", func(c *h2raw.Client) error {
			for range 1000 {
				if err := c.Framer.WriteData(1, false, nil); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeEnhanceYourCalm, "empty_frames"},
		{"more streams than the app allows", func(c *h2raw.Client) error {
			for i := uint32(3); i < 3+2*50; i += 2 {
				if err := c.OpenStream(i, h2raw.GRPCRequest(fullDuplex)); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeProtocol, "too_many_streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, appAddr := startApp(t, grpc.MaxConcurrentStreams(10))
			r := startRelay(t, appAddr)
			good := client(t, r.addr)
			ctx := testCtx(t)
			if _, err := good.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
			before := heapInUse()

			c := openRawStream(t, r.addr)
			defer c.Close()
			_ = tt.attack(c) // the sidecar may close the connection mid-attack
			f, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameGoAway })
			if err != nil {
				t.Fatalf("no GOAWAY after the attack: %v", err)
			}
			g := f.(*http2.GoAwayFrame)
			if g.ErrCode != tt.code || !strings.HasPrefix(string(g.DebugData()), tt.kind) {
				t.Fatalf("GOAWAY %v %q, want %v %q...", g.ErrCode, g.DebugData(), tt.code, tt.kind)
			}
			connEvent := waitConnectionEvent(t, r)
			if connEvent.Reason != event.ReasonProtocolError || connEvent.Initiator != event.InitiatorSidecar || connEvent.HTTP2ErrorCode != uint32(tt.code) {
				t.Fatalf("connection event %+v, want PROTOCOL_ERROR by the sidecar with %v", connEvent, tt.code)
			}
			if grown := heapInUse() - before; grown > 64<<20 {
				t.Errorf("heap grew by %d MiB during the attack", grown>>20)
			}
			if _, err := good.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
				t.Fatalf("a well-behaved client on another connection failed: %v", err)
			}
		})
	}
}

// waitConnectionEvent skips stream events (a rapid reset makes hundreds)
// until the connection's event.
func waitConnectionEvent(t *testing.T, r *relay) event.Event {
	t.Helper()
	for {
		e := r.waitEvents(t, 1, 10*time.Second)[0]
		if e.Scope == event.ScopeConnection {
			return e
		}
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestShutdownDrain: on shutdown every client gets the graceful GOAWAY, and
// a stream that outlives the drain timeout is cut off with reason SHUTDOWN.
func TestShutdownDrain(t *testing.T) {
	app, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := openRawStream(t, r.addr)
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- r.srv.Shutdown(testCtx(t), time.Second) }()
	if _, err := c.ReadUntil(5*time.Second, isGoAway(http2.ErrCodeNo, "shutdown")); err != nil {
		t.Fatalf("no graceful GOAWAY: %v", err)
	}
	ev := r.waitEvents(t, 1, 5*time.Second)[0]
	if ev.Reason != event.ReasonShutdown || ev.StreamID != 1 || ev.Initiator != event.InitiatorSidecar {
		t.Fatalf("event %+v, want SHUTDOWN for stream 1", ev)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if call := waitCall(t, app, 5*time.Second); call.Err == nil {
		t.Fatal("the app's handler was not cancelled")
	}
}

// TestFirstAnswerThenCancelIsNotRapidReset plays a well-behaved client with
// a real grpc-go client: one call at a time, about 50 a second, it opens a
// bidi stream, reads the first answer and cancels. Those resets come after
// the app answered, so they cost the app nothing new and must never be
// taken for a Rapid Reset. Before the budget counted only unanswered
// streams, the connection got GOAWAY ENHANCE_YOUR_CALM at the 100th call.
func TestFirstAnswerThenCancelIsNotRapidReset(t *testing.T) {
	const calls = 130
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	tc := client(t, r.addr)
	ctx := testCtx(t)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range calls {
		<-tick.C
		callCtx, cancel := context.WithCancel(ctx)
		stream, err := tc.FullDuplexCall(callCtx)
		if err == nil {
			err = stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
		}
		if err == nil {
			_, err = stream.Recv()
		}
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Each cancel is a client reset of a running handler: one RST_STREAM
	// event per call, and never a connection event.
	for i, e := range r.waitEvents(t, calls, 10*time.Second) {
		if e.Scope != event.ScopeStream || e.Reason != event.ReasonRSTStream || e.HTTP2ErrorCode != uint32(http2.ErrCodeCancel) {
			t.Fatalf("event %d: %+v, want a client RST_STREAM(CANCEL)", i, e)
		}
	}
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("unary call after the cancels: %v", err)
	}
	r.noEvents(t)
}
