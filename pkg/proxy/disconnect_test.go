package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestClientDisconnects opens a bidi stream with a raw client, lets the app's
// handler start, ends the client in each way and checks the events and
// that the app's handler was cancelled in band.
func TestClientDisconnects(t *testing.T) {
	tests := []struct {
		name       string
		leave      func(c *h2raw.Client) error
		reason     event.Reason
		initiator  event.Initiator
		code       http2.ErrCode
		debug      string
		connection bool // a connection-scope event follows the stream's
	}{
		{"RST_STREAM CANCEL", func(c *h2raw.Client) error { return c.Framer.WriteRSTStream(1, http2.ErrCodeCancel) },
			event.ReasonRSTStream, event.InitiatorClient, http2.ErrCodeCancel, "", false},
		{"RST_STREAM INTERNAL_ERROR", func(c *h2raw.Client) error { return c.Framer.WriteRSTStream(1, http2.ErrCodeInternal) },
			event.ReasonRSTStream, event.InitiatorClient, http2.ErrCodeInternal, "", false},
		{"TCP close with the stream open", func(c *h2raw.Client) error { return c.Close() },
			event.ReasonConnectionClosed, event.InitiatorClient, 0, "", true},
		{"TCP reset", func(c *h2raw.Client) error { return c.Reset() },
			event.ReasonConnectionReset, event.InitiatorClient, 0, "", true},
		{"GOAWAY then close", func(c *h2raw.Client) error {
			if err := c.Framer.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("bye now")); err != nil {
				return err
			}
			return c.Close()
		}, event.ReasonGoAway, event.InitiatorClient, http2.ErrCodeEnhanceYourCalm, "bye now", true},
		// grpc-go's Close: GOAWAY, then close(2), which the kernel turns
		// into RST when frames are still unread. The same goodbye as above.
		{"GOAWAY then TCP reset", func(c *h2raw.Client) error {
			if err := goAwaySeen(c, http2.ErrCodeNo, "client transport shutdown"); err != nil {
				return err
			}
			return c.Reset()
		}, event.ReasonGoAway, event.InitiatorClient, http2.ErrCodeNo, "client transport shutdown", true},
		{"malformed frame", func(c *h2raw.Client) error { return c.Framer.WriteContinuation(9, true, []byte{0x82}) },
			event.ReasonProtocolError, event.InitiatorSidecar, http2.ErrCodeProtocol, "CONTINUATION without HEADERS", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, appAddr := startApp(t)
			r := startRelay(t, appAddr, withHeaders("x-tenant"))
			c := openRawStream(t, r.addr, "x-tenant", "acme")
			defer c.Close()

			died := time.Now()
			if err := tt.leave(c); err != nil {
				t.Fatalf("leave: %v", err)
			}
			want := 1
			if tt.connection {
				want = 2
			}
			events := r.waitEvents(t, want, 5*time.Second)
			ev := events[0]
			if ev.Scope != event.ScopeStream || ev.Reason != tt.reason || ev.Initiator != tt.initiator ||
				ev.HTTP2ErrorCode != uint32(tt.code) || ev.StreamID != 1 || ev.GoAwayDebug != tt.debug {
				t.Errorf("stream event %+v, want %v by %v code %v debug %q on stream 1", ev, tt.reason, tt.initiator, tt.code, tt.debug)
			}
			if ev.Method != fullDuplex || ev.Authority != "hangup.test" || ev.Headers["x-tenant"] != "acme" {
				t.Errorf("stream event names %q %q %v", ev.Method, ev.Authority, ev.Headers)
			}
			if ev.BytesFromClient == 0 || ev.BytesToClient == 0 || ev.StartedAt.IsZero() || ev.DetectedAt.Before(ev.StartedAt) {
				t.Errorf("stream event counts/times: %+v", ev)
			}
			if tt.connection {
				if ce := events[1]; ce.Scope != event.ScopeConnection || ce.Reason != tt.reason || ce.ConnectionID != ev.ConnectionID {
					t.Errorf("connection event %+v", ce)
				}
			}
			call := waitCall(t, app, 5*time.Second)
			if !errors.Is(call.Err, context.Canceled) {
				t.Errorf("app handler ended with %v, want its context cancelled", call.Err)
			}
			if call.ConnectionID != ev.ConnectionID || call.StreamID != ev.StreamID {
				t.Errorf("event names %s/%d, the app saw %s/%d", ev.ConnectionID, ev.StreamID, call.ConnectionID, call.StreamID)
			}
			t.Logf("event after %v, handler cancelled after %v", ev.DetectedAt.Sub(died), call.Ended.Sub(died))
			r.noEvents(t)
		})
	}
}

const fullDuplex = h2raw.FullDuplex

// openRawStream opens stream 1 (FullDuplexCall) and waits for the app's
// first answer, so the handler is running.
func openRawStream(t *testing.T, addr string, headers ...string) *h2raw.Client {
	t.Helper()
	c, err := h2raw.DialStreams(addr, 1, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNormalEndingsAreNotDisconnects checks that calls that end normally,
// and a client that leaves with nothing open, produce no event.
func TestNormalEndingsAreNotDisconnects(t *testing.T) {
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := openRawStream(t, r.addr)
	if err := c.SendMessage(1, nil, true); err != nil { // half-close: the app returns
		t.Fatal(err)
	}
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
		return f.Header().Type == http2.FrameHeaders && f.Header().Flags.Has(http2.FlagHeadersEndStream)
	}); err != nil {
		t.Fatalf("waiting for trailers: %v", err)
	}
	// RST_STREAM after the call ended, then a plain close with nothing open.
	if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	// A PING round trip proves the relay has processed the reset.
	if err := c.Framer.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == [8]byte{1}
	}); err != nil {
		t.Fatalf("app's PING ACK did not come back through the relay: %v", err)
	}
	r.noEvents(t)
	_ = c.Close()
	// The relay closes the app connection after the client's EOF; a new
	// connection and its call then prove the relay is done with the old one.
	c2 := openRawStream(t, r.addr)
	defer c2.Reset()
	r.noEvents(t)
}

// TestGoAwayWithNothingOpenIsNoDisconnect: a client that finished its calls
// sends GOAWAY and closes its socket, as grpc-go's ClientConn.Close does.
// Whether its kernel then sends FIN, or RST because a frame (a PING ACK, a
// WINDOW_UPDATE) arrived that it never read, it left normally: no event.
// Before, the RST made a connection CONNECTION_RESET event; the soak saw
// it as an event about a connection it never made (its readiness probe's).
func TestGoAwayWithNothingOpenIsNoDisconnect(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(c *h2raw.Client) error
	}{
		{"then FIN", (*h2raw.Client).Close},
		{"then RST", (*h2raw.Client).Reset},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ended := make(chan struct{}, 1)
			_, appAddr := startApp(t, grpc.StatsHandler(connEndHandler(ended)))
			r := startRelay(t, appAddr)
			c := openRawStream(t, r.addr)
			defer c.Close()
			if err := c.SendMessage(1, nil, true); err != nil { // half-close: the app returns
				t.Fatal(err)
			}
			if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
				return f.Header().Type == http2.FrameHeaders && f.Header().Flags.Has(http2.FlagHeadersEndStream)
			}); err != nil {
				t.Fatalf("waiting for trailers: %v", err)
			}
			if err := goAwaySeen(c, http2.ErrCodeNo, "client transport shutdown"); err != nil {
				t.Fatal(err)
			}
			if err := tt.close(c); err != nil {
				t.Fatal(err)
			}
			// The relay reports the client's end before it closes the app
			// connection: once the app's connection has ended, every event
			// about this client has been made.
			testtools.Receive(t, ended, 1, 5*time.Second)
			r.noEvents(t)
		})
	}
}

// goAwaySeen sends GOAWAY and waits until a PING sent after it comes back
// through the relay, which has then read the GOAWAY.
func goAwaySeen(c *h2raw.Client, code http2.ErrCode, debug string) error {
	if err := c.Framer.WriteGoAway(0, code, []byte(debug)); err != nil {
		return fmt.Errorf("write GOAWAY: %w", err)
	}
	if err := c.Framer.WritePing(false, [8]byte{2}); err != nil {
		return fmt.Errorf("write PING: %w", err)
	}
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == [8]byte{2}
	}); err != nil {
		return fmt.Errorf("wait for the PING ACK after GOAWAY: %w", err)
	}
	return nil
}

// connEndHandler is a gRPC server stats handler that signals ended when a
// connection of the server has ended.
type connEndHandler chan<- struct{}

func (h connEndHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h connEndHandler) HandleRPC(context.Context, stats.RPCStats)                       {}
func (h connEndHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h connEndHandler) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnEnd); ok {
		select {
		case h <- struct{}{}:
		default:
		}
	}
}

// echoMsg is one FullDuplexCall request asking for an 8-byte answer.
func echoMsg(t *testing.T) []byte {
	t.Helper()
	msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func withHeaders(names ...string) func(*proxyConfig) {
	return func(c *proxyConfig) { c.NotifyHeaders = names }
}

// TestNoDescriptorOutlivesItsConnection ends connections in every way and
// checks that the process's open descriptors return to what they were.
func TestNoDescriptorOutlivesItsConnection(t *testing.T) {
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := client(t, r.addr) // one long-lived client, opened before the baseline
	if _, err := c.EmptyCall(testCtx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	baseline := openFDs(t)
	endings := []func(*h2raw.Client){
		func(c *h2raw.Client) { _ = c.Close() },
		func(c *h2raw.Client) { _ = c.Reset() },
		func(c *h2raw.Client) { _ = c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); _ = c.Close() },
		func(c *h2raw.Client) { _ = c.Framer.WriteContinuation(3, true, nil); _ = c.Close() },
	}
	for i := range 40 {
		endings[i%len(endings)](openRawStream(t, r.addr))
	}
	for range 40 {
		r.waitEvents(t, 1, 5*time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := openFDs(t); n > baseline; n = openFDs(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open after the connections ended, %d before", n, baseline)
		}
		<-tick.C
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	return len(entries)
}
