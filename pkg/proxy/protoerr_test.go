package proxy_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestClientProtocolErrorsTheRelayAnswers plays client protocol errors
// that the relay used to leave to the app, against the real demo app with
// a running handler on stream 1. The relay must answer each itself: a
// connection error with GOAWAY and the right code, a PROTOCOL_ERROR event
// for the running stream and the connection, and the app's connection
// closed cleanly so that the handler is cancelled; a stream error with
// RST_STREAM to the client, an event for that stream only, and the
// connection running on. Before, the app closed the connection, the relay
// saw "app closed", and no event was made.
func TestClientProtocolErrorsTheRelayAnswers(t *testing.T) {
	tests := []struct {
		name      string
		violate   func(c *h2raw.Client) error
		code      http2.ErrCode
		streamErr bool   // a stream error on stream 1, not a connection error
		opened    uint32 // a second stream the violation opened, 0 if none
	}{
		{"DATA larger than SETTINGS_MAX_FRAME_SIZE", func(c *h2raw.Client) error {
			return c.Framer.WriteData(1, false, make([]byte, 16384+1))
		}, http2.ErrCodeFrameSize, false, 0},
		{"WINDOW_UPDATE 0 on the connection", func(c *h2raw.Client) error {
			return c.Framer.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, make([]byte, 4))
		}, http2.ErrCodeProtocol, false, 0},
		{"HEADERS on an even stream id", func(c *h2raw.Client) error {
			return c.OpenStream(4, h2raw.GRPCRequest(fullDuplex))
		}, http2.ErrCodeProtocol, false, 0},
		{"HEADERS on a lower stream id", func(c *h2raw.Client) error {
			if err := c.OpenStream(7, h2raw.GRPCRequest(fullDuplex)); err != nil {
				return err
			}
			return c.OpenStream(5, h2raw.GRPCRequest(fullDuplex))
		}, http2.ErrCodeProtocol, false, 7},
		{"WINDOW_UPDATE 0 on a stream", func(c *h2raw.Client) error {
			return c.Framer.WriteRawFrame(http2.FrameWindowUpdate, 0, 1, make([]byte, 4))
		}, http2.ErrCodeProtocol, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, appAddr := startApp(t)
			r := startRelay(t, appAddr)
			c := openRawStream(t, r.addr)
			defer c.Close()
			c.Framer.AllowIllegalWrites = true
			if err := tt.violate(c); err != nil {
				t.Fatalf("writing the violation: %v", err)
			}
			if tt.streamErr {
				f, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool {
					return f.Header().Type == http2.FrameRSTStream || f.Header().Type == http2.FrameGoAway
				})
				if err != nil {
					t.Fatalf("no RST_STREAM: %v", err)
				}
				if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != 1 || rst.ErrCode != tt.code {
					t.Fatalf("got %v, want RST_STREAM(1, %v)", f, tt.code)
				}
			} else {
				f, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameGoAway })
				if err != nil {
					t.Fatalf("no GOAWAY: %v", err)
				}
				if g := f.(*http2.GoAwayFrame); g.ErrCode != tt.code {
					t.Fatalf("GOAWAY %v %q, want %v", g.ErrCode, g.DebugData(), tt.code)
				}
			}
			want := 2 // stream 1 and the connection
			if tt.streamErr {
				want = 1
			}
			if tt.opened != 0 {
				want++
			}
			for _, e := range r.waitEvents(t, want, 10*time.Second) {
				if e.Reason != event.ReasonProtocolError || e.Initiator != event.InitiatorSidecar || e.HTTP2ErrorCode != uint32(tt.code) ||
					(e.Scope == event.ScopeStream && e.StreamID != 1 && e.StreamID != tt.opened) {
					t.Fatalf("event %+v, want PROTOCOL_ERROR by the sidecar with %v for stream 1 or the connection", e, tt.code)
				}
			}
			call := waitCall(t, app, 10*time.Second)
			if call.Err == nil || !strings.Contains(call.Err.Error(), "anceled") {
				t.Fatalf("the app's handler ended with %v, want it cancelled", call.Err)
			}
			if tt.streamErr {
				// The connection runs on: a new call on it is answered.
				if err := c.OpenStream(3, h2raw.GRPCRequest(fullDuplex)); err != nil {
					t.Fatal(err)
				}
				if err := c.SendMessage(3, echoMsg(t), true); err != nil {
					t.Fatal(err)
				}
				if _, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool {
					return f.Header().Type == http2.FrameData && f.Header().StreamID == 3
				}); err != nil {
					t.Fatalf("no answer on stream 3 after the stream error: %v", err)
				}
			}
			r.noEvents(t)
		})
	}
}
