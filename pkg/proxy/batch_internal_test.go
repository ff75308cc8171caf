package proxy

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/pkg/event"
)

// TestUnparkedForwarderStaysBig: a forwarder that cannot park (TLS) gives
// its batch back after every read; once its source filled the small
// buffer it takes a big one each time, as it did before small buffers,
// rather than reading a busy source 4 KiB at a time.
func TestUnparkedForwarderStaysBig(t *testing.T) {
	tc := newTestConnWith(t, func(c *Config) { c.Sink = event.SinkFunc(func(event.Event) {}) })
	f := tc.up
	f.sock = nil // as for TLS
	if err := feed(t, f, frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"), EndHeaders: true})
		_ = fr.WriteData(1, false, make([]byte, 2*smallBufSize))
	})); err != nil {
		t.Fatal(err)
	}
	f.releaseBatch() // as run does after each read when the socket cannot park
	f.takeBatch()
	if len(f.buf) != readBufSize {
		t.Errorf("after a read that filled the small buffer the next read gets %d bytes, want %d", len(f.buf), readBufSize)
	}
	f.releaseBatch()
	f.parked()
	f.takeBatch()
	if len(f.buf) != smallBufSize {
		t.Errorf("after parking the next read gets %d bytes, want %d", len(f.buf), smallBufSize)
	}
}

// TestReadBufferFollowsTheSource checks the client forwarder's read buffer
// after each kind of read: the small one while batches fit in it, a
// pooled big one once a read filled it or a frame needs more, and, once
// the forwarder parks, its batch back to the small buffer with no events
// kept alive by the pool.
func TestReadBufferFollowsTheSource(t *testing.T) {
	headers := func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer, extra ...hpack.HeaderField) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M", extra...), EndHeaders: true})
	}
	tests := []struct {
		name       string
		in         func(t *testing.T) []byte
		wantBuf    int
		wantEvents bool
	}{
		{"a call's headers", func(t *testing.T) []byte {
			return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) { headers(fr, enc, hb) })
		}, smallBufSize, false},
		{"whole frames that fill the small buffer", func(t *testing.T) []byte {
			head := frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) { headers(fr, enc, hb) })
			in := append(head, frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
				_ = fr.WriteData(1, false, make([]byte, smallBufSize-len(head)-frameHeaderLen))
			})...)
			if len(in) != smallBufSize {
				t.Fatalf("test input is %d bytes, want %d", len(in), smallBufSize)
			}
			return in
		}, readBufSize, false},
		{"headers larger than the small buffer", func(t *testing.T) []byte {
			return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				headers(fr, enc, hb, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 2*smallBufSize)})
			})
		}, readBufSize, false},
		{"a reset call", func(t *testing.T) []byte {
			return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				headers(fr, enc, hb)
				_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
			})
		}, smallBufSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConnWith(t, func(c *Config) { c.Sink = event.SinkFunc(func(event.Event) {}) })
			f := tc.up
			if err := feed(t, f, tt.in(t)); err != nil {
				t.Fatal(err)
			}
			if f.n != 0 {
				t.Fatalf("%d bytes pending after whole frames", f.n)
			}
			if len(f.buf) != tt.wantBuf {
				t.Errorf("buffer of %d bytes, want %d", len(f.buf), tt.wantBuf)
			}
			if got := len(f.events) > 0; got != tt.wantEvents {
				t.Errorf("batch has events: %v, want %v", got, tt.wantEvents)
			}
			b := f.batch
			events := f.events[:cap(f.events)]
			f.releaseBatch()
			if f.batch != nil {
				t.Fatal("a released forwarder still holds its batch")
			}
			if len(b.buf) != smallBufSize || b.big != nil {
				t.Errorf("released batch holds a %d-byte buffer (big from the pool: %v), want its small one", len(b.buf), b.big != nil)
			}
			for i, ev := range events {
				if !reflect.ValueOf(ev).IsZero() {
					t.Errorf("released batch keeps event %d: %+v", i, ev)
				}
			}
		})
	}
}

// TestEndedForwarderGivesItsBatchBack: the read that sees a connection end
// takes a batch like any other; the forwarder gives it back to the pool
// as it ends, so that a connection's end is not two read buffers of
// garbage (BenchmarkIdleMemory's connections took 1,804 batches that
// never came back, one per forwarder that woke to read its peer's close).
func TestEndedForwarderGivesItsBatchBack(t *testing.T) {
	tests := []struct {
		name string
		in   func(t *testing.T) []byte
	}{
		{"after a call's headers", func(t *testing.T) []byte {
			return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"), EndHeaders: true})
			})
		}},
		{"holding a big buffer", func(t *testing.T) []byte {
			return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"), EndHeaders: true})
				_ = fr.WriteData(1, false, make([]byte, 2*smallBufSize))
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConnWith(t, func(c *Config) { c.Sink = event.SinkFunc(func(event.Event) {}) })
			// As relay starts them: both forwarders counted.
			tc.c.running.Store(2)
			tc.c.srv.wg.Add(2)
			f := tc.up
			if err := feed(t, f, tt.in(t)); err != nil {
				t.Fatal(err)
			}
			f.done(readError{io.EOF})
			if f.batch != nil {
				t.Errorf("an ended forwarder holds its batch (%d-byte buffer)", len(f.buf))
			}
			tc.down.done(readError{io.EOF})
			tc.c.srv.wg.Wait()
		})
	}
}
