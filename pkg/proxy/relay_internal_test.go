package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// bufConn is a net.Conn whose writes land in a buffer: the forwarders'
// output in unit tests, with no socket.
type bufConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *bufConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) Close() error                     { return nil }
func (c *bufConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

// testConn is a conn whose two forwarders are driven by hand.
type testConn struct {
	c          *conn
	up, down   *forwarder
	app, cli   *bufConn
	events     []event.Event
	appDecoder *hpack.Decoder
}

func newTestConn(t *testing.T) *testConn {
	t.Helper()
	return newTestConnWith(t)
}

// newTestConnWith is newTestConn with changes to the server's Config.
func newTestConnWith(t *testing.T, mutate ...func(*Config)) *testConn {
	t.Helper()
	tc := &testConn{app: &bufConn{}, cli: &bufConn{}}
	cfg := Config{
		Upstream: Address{Network: "tcp", Address: "127.0.0.1:1"},
		Sink:     event.SinkFunc(func(e event.Event) { tc.events = append(tc.events, e) }),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(srv, tc.cli, tc.app)
	c.id = "test-conn"
	t.Cleanup(c.stopTimer)
	tc.c = c
	tc.up = newClientForwarder(c)
	tc.down = newAppForwarder(c)
	tc.appDecoder = hpack.NewDecoder(defaultHeaderTableSize, nil)
	return tc
}

// feed hands bytes to a forwarder as the relay's reads would: each read
// at most what the buffer has room for (one read when b fits).
func feed(t *testing.T, f *forwarder, b []byte) error {
	t.Helper()
	for len(b) > 0 {
		if f.batch == nil {
			f.takeBatch()
		}
		if f.n == len(f.buf) {
			t.Fatalf("the buffer (%d bytes) is full of an incomplete frame and was not grown", len(f.buf))
		}
		n := copy(f.buf[f.n:], b)
		b = b[n:]
		if err := f.consume(n); err != nil {
			return err
		}
	}
	return nil
}

// frames builds wire bytes with x/net's Framer.
func frames(t *testing.T, write func(*http2.Framer, *hpack.Encoder, *bytes.Buffer)) []byte {
	t.Helper()
	var out, hb bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	write(fr, hpack.NewEncoder(&hb), &hb)
	return out.Bytes()
}

// readFrames parses everything in b.
func readFrames(t *testing.T, b []byte) []http2.Frame {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	var got []http2.Frame
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return got
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			got = append(got, &headersCopy{HeadersFrame: f, frag: bytes.Clone(f.HeaderBlockFragment())})
		case *http2.ContinuationFrame:
			got = append(got, &contCopy{ContinuationFrame: f, frag: bytes.Clone(f.HeaderBlockFragment())})
		case *http2.DataFrame:
			got = append(got, &dataCopy{DataFrame: f, data: bytes.Clone(f.Data())})
		default:
			got = append(got, f)
		}
	}
}

type headersCopy struct {
	*http2.HeadersFrame
	frag []byte
}
type contCopy struct {
	*http2.ContinuationFrame
	frag []byte
}
type dataCopy struct {
	*http2.DataFrame
	data []byte
}

func request(enc *hpack.Encoder, hb *bytes.Buffer, path string, extra ...hpack.HeaderField) []byte {
	hb.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "svc"}, {Name: "content-type", Value: "application/grpc"}} {
		_ = enc.WriteField(f)
	}
	for _, f := range extra {
		_ = enc.WriteField(f)
	}
	return bytes.Clone(hb.Bytes())
}

// appFields decodes the header blocks the app received, in order.
func (tc *testConn) appFields(t *testing.T) [][]hpack.HeaderField {
	t.Helper()
	var blocks [][]hpack.HeaderField
	var frag []byte
	for _, f := range readFrames(t, tc.app.out.Bytes()) {
		switch f := f.(type) {
		case *headersCopy:
			frag = append(frag[:0], f.frag...)
			if !f.HeadersEnded() {
				continue
			}
		case *contCopy:
			frag = append(frag, f.frag...)
			if !f.HeadersEnded() {
				continue
			}
		default:
			continue
		}
		fields, err := tc.appDecoder.DecodeFull(frag)
		if err != nil {
			t.Fatalf("app cannot decode a block from the relay: %v", err)
		}
		blocks = append(blocks, fields)
	}
	return blocks
}

func TestHeaderBlockReencoding(t *testing.T) {
	custom := hpack.HeaderField{Name: "x-user", Value: "alice"}
	forged := hpack.HeaderField{Name: HeaderConnectionID, Value: "forged"}
	tests := []struct {
		name  string
		reads func(t *testing.T) [][]byte // one entry per socket read
		want  []hpack.HeaderField         // the non-pseudo fields the app must see
	}{
		{"single HEADERS frame", func(t *testing.T) [][]byte {
			return [][]byte{frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M", custom), EndHeaders: true})
			})}
		}, []hpack.HeaderField{{Name: "content-type", Value: "application/grpc"}, custom,
			{Name: HeaderConnectionID, Value: "test-conn"}, {Name: HeaderStreamID, Value: "1"}}},
		{"HEADERS and two CONTINUATIONs across three reads", func(t *testing.T) [][]byte {
			var block []byte
			head := frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				block = request(enc, hb, "/a.S/M", custom)
			})
			_ = head
			return [][]byte{
				frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
				}),
				frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
					_ = fr.WriteContinuation(1, false, block[3:7])
				}),
				frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
					_ = fr.WriteContinuation(1, true, block[7:])
				}),
			}
		}, []hpack.HeaderField{{Name: "content-type", Value: "application/grpc"}, custom,
			{Name: HeaderConnectionID, Value: "test-conn"}, {Name: HeaderStreamID, Value: "1"}}},
		{"forged ids are dropped", func(t *testing.T) [][]byte {
			return [][]byte{frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: request(enc, hb, "/a.S/M", forged,
					hpack.HeaderField{Name: HeaderStreamID, Value: "99"}), EndHeaders: true})
			})}
		}, []hpack.HeaderField{{Name: "content-type", Value: "application/grpc"},
			{Name: HeaderConnectionID, Value: "test-conn"}, {Name: HeaderStreamID, Value: "3"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConn(t)
			reads := tt.reads(t)
			for i, r := range reads {
				if err := feed(t, tc.up, r); err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if i < len(reads)-1 && tc.app.out.Len() != 0 {
					t.Fatalf("after read %d of an unfinished block the app already got %d bytes", i, tc.app.out.Len())
				}
			}
			blocks := tc.appFields(t)
			if len(blocks) != 1 {
				t.Fatalf("app got %d header blocks, want 1", len(blocks))
			}
			var regular []hpack.HeaderField
			for _, f := range blocks[0] {
				if !f.IsPseudo() {
					regular = append(regular, f)
				}
			}
			if !equalFields(regular, tt.want) {
				t.Errorf("app got %v, want %v", regular, tt.want)
			}
		})
	}
}

func equalFields(a, b []hpack.HeaderField) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func TestHeadersPaddingAndPriority(t *testing.T) {
	tc := newTestConn(t)
	prio := http2.PriorityParam{StreamDep: 0, Exclusive: true, Weight: 200}
	in := frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"),
			EndHeaders: true, EndStream: true, PadLength: 17, Priority: prio})
	})
	if err := feed(t, tc.up, in); err != nil {
		t.Fatal(err)
	}
	got := readFrames(t, tc.app.out.Bytes())
	if len(got) != 1 {
		t.Fatalf("app got %d frames, want 1", len(got))
	}
	h := got[0].(*headersCopy)
	if h.Flags.Has(http2.FlagHeadersPadded) {
		t.Errorf("padding forwarded; the relay re-encodes and should drop it")
	}
	if !h.HasPriority() || h.Priority != prio {
		t.Errorf("priority = %+v (present %v), want %+v", h.Priority, h.HasPriority(), prio)
	}
	if !h.StreamEnded() {
		t.Errorf("END_STREAM lost")
	}

	bad := []struct {
		name    string
		payload []byte
		flags   http2.Flags
		code    http2.ErrCode
	}{
		{"pad length beyond payload", []byte{9, 0x82}, http2.FlagHeadersPadded | http2.FlagHeadersEndHeaders, http2.ErrCodeProtocol},
		{"priority truncated", []byte{0, 0}, http2.FlagHeadersPriority | http2.FlagHeadersEndHeaders, http2.ErrCodeFrameSize},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConn(t)
			b := appendFrameHeader(nil, frameHeader{Length: uint32(len(tt.payload)), Type: http2.FrameHeaders, Flags: tt.flags, StreamID: 1})
			err := feed(t, tc.up, append(b, tt.payload...))
			var ce connError
			if !asConnError(err, &ce) || ce.Code != tt.code {
				t.Fatalf("err = %v, want connection error %v", err, tt.code)
			}
		})
	}
}

func asConnError(err error, ce *connError) bool {
	c, ok := err.(connError)
	if ok {
		*ce = c
	}
	return ok
}

func TestHeaderBlockRules(t *testing.T) {
	tests := []struct {
		name string
		in   func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)
		code http2.ErrCode
	}{
		{"DATA inside a header block", func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a")})
			_ = fr.WriteData(1, false, []byte("x"))
		}, http2.ErrCodeProtocol},
		{"CONTINUATION on another stream", func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a")})
			_ = fr.WriteContinuation(3, true, []byte{0x82})
		}, http2.ErrCodeProtocol},
		{"CONTINUATION without HEADERS", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteContinuation(1, true, []byte{0x82})
		}, http2.ErrCodeProtocol},
		{"HEADERS on stream 0", func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 0, BlockFragment: request(enc, hb, "/a"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"broken hpack", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, http2.ErrCodeCompression},
		{"PUSH_PROMISE from the client", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"DATA on stream 0", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteData(0, false, []byte("x"))
		}, http2.ErrCodeProtocol},
		{"RST_STREAM on stream 0", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteRSTStream(0, http2.ErrCodeCancel)
		}, http2.ErrCodeProtocol},
		{"PING on a stream", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8))
		}, http2.ErrCodeProtocol},
		{"SETTINGS of a length not a multiple of 6", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteRawFrame(http2.FrameSettings, 0, 0, make([]byte, 7))
		}, http2.ErrCodeFrameSize},
		{"WINDOW_UPDATE of 3 bytes", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, make([]byte, 3))
		}, http2.ErrCodeFrameSize},
		{"frame larger than the app's SETTINGS_MAX_FRAME_SIZE", func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, make([]byte, defaultMaxFrameSize+1))
		}, http2.ErrCodeFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConn(t)
			var err error
			for _, chunk := range chunks(frames(t, tt.in), readBufSize) {
				if err = feed(t, tc.up, chunk); err != nil {
					break
				}
			}
			var ce connError
			if !asConnError(err, &ce) || ce.Code != tt.code {
				t.Fatalf("err = %v, want connection error %v", err, tt.code)
			}
		})
	}
}

func chunks(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// TestHeaderTableSizeChange checks that the relay's encoder follows the
// app's SETTINGS_HEADER_TABLE_SIZE: a smaller table is signalled at the
// start of the next block, and the app's decoder stays in step.
func TestHeaderTableSizeChange(t *testing.T) {
	tc := newTestConn(t)
	req := func(path string) []byte {
		return frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, path), EndHeaders: true, EndStream: true})
		})
	}
	if err := feed(t, tc.up, req("/a.S/First")); err != nil {
		t.Fatal(err)
	}
	settings := frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	})
	if err := feed(t, tc.down, settings); err != nil {
		t.Fatal(err)
	}
	out := tc.cli.out.Bytes()
	if !bytes.HasPrefix(out, settings) {
		t.Fatalf("SETTINGS not forwarded unchanged to the client")
	}
	// The relay's first PING, which times the round trip, follows the
	// app's first SETTINGS (the server preface), and nothing else.
	if rest := out[len(settings):]; len(rest) != frameHeaderLen+8 || http2.FrameType(rest[3]) != http2.FramePing {
		t.Fatalf("after the SETTINGS the client got % x, want the relay's PING", rest)
	}
	// The app now decodes with a table of 0.
	if got := len(tc.appFields(t)); got != 1 {
		t.Fatalf("first block: %d", got)
	}
	tc.app.out.Reset()
	tc.appDecoder.SetAllowedMaxDynamicTableSize(0)
	// The client learned the new size too and encodes with a fresh encoder.
	second := frames(t, func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		enc.SetMaxDynamicTableSizeLimit(0)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: request(enc, hb, "/a.S/Second"), EndHeaders: true, EndStream: true})
	})
	tc.up.dec.setAllowedTableSize(0)
	if err := feed(t, tc.up, second); err != nil {
		t.Fatal(err)
	}
	got := readFrames(t, tc.app.out.Bytes())
	if len(got) != 1 {
		t.Fatalf("app got %d frames", len(got))
	}
	if frag := got[0].(*headersCopy).frag; len(frag) == 0 || frag[0] != 0x20 {
		t.Fatalf("block starts with %#x, want a dynamic table size update to 0 (0x20)", frag[:1])
	}
	blocks := tc.appFields(t)
	if len(blocks) != 1 || fieldValue(blocks[0], ":path") != "/a.S/Second" {
		t.Fatalf("app decoded %v", blocks)
	}
}

// TestStreamLifecycle follows streams through the RFC 9113 §5.1 states and
// checks which endings are disconnects.
func TestStreamLifecycle(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{SpanProcessor: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	tc := newTestConnWith(t, func(c *Config) { c.Telemetry = tel })
	var respEnc bytes.Buffer
	appEnc := hpack.NewEncoder(&respEnc)
	block := func(fields ...hpack.HeaderField) []byte {
		respEnc.Reset()
		for _, f := range fields {
			_ = appEnc.WriteField(f)
		}
		return bytes.Clone(respEnc.Bytes())
	}
	client := func(write func(*http2.Framer, *hpack.Encoder, *bytes.Buffer)) {
		t.Helper()
		if err := feed(t, tc.up, frames(t, write)); err != nil {
			t.Fatal(err)
		}
	}
	app := func(write func(*http2.Framer)) {
		t.Helper()
		if err := feed(t, tc.down, frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) { write(fr) })); err != nil {
			t.Fatal(err)
		}
	}
	state := func(id uint32) streamState {
		if s := tc.c.streams.get(id); s != nil {
			return s.state
		}
		return stateClosed
	}

	var clientEnc *hpack.Encoder
	var clientBuf bytes.Buffer
	clientEnc = hpack.NewEncoder(&clientBuf)
	open := func(id uint32, end bool) {
		client(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: request(clientEnc, &clientBuf, "/a.S/M"), EndHeaders: true, EndStream: end})
		})
	}

	open(1, false)
	if s := state(1); s != stateOpen {
		t.Fatalf("after HEADERS: %v, want open", s)
	}
	client(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) { _ = fr.WriteData(1, true, []byte("hello")) })
	if s := state(1); s != stateHalfClosedRemote {
		t.Fatalf("after client END_STREAM: %v, want half-closed (remote)", s)
	}
	if got := tc.c.streams.get(1).bytesFromClient; got != 5 {
		t.Fatalf("bytes from client = %d, want 5", got)
	}
	app(func(fr *http2.Framer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(hpack.HeaderField{Name: ":status", Value: "200"}), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("world!"))
	})
	s1 := tc.c.streams.get(1)
	if s1.bytesToClient != 6 {
		t.Fatalf("bytes to client = %d, want 6", s1.bytesToClient)
	}
	app(func(fr *http2.Framer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
			BlockFragment: block(hpack.HeaderField{Name: "grpc-status", Value: "5"}, hpack.HeaderField{Name: "grpc-message", Value: "not found"})})
	})
	if s := state(1); s != stateClosed || tc.c.streams.get(1) != nil {
		t.Fatalf("after both END_STREAMs: %v, want closed and forgotten", s)
	}
	open(3, false)
	app(func(fr *http2.Framer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndStream: true, EndHeaders: true, BlockFragment: block(hpack.HeaderField{Name: "grpc-status", Value: "0"})})
	})
	if s := state(3); s != stateHalfClosedLocal {
		t.Fatalf("after app END_STREAM: %v, want half-closed (local)", s)
	}
	client(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	if len(tc.events) != 0 {
		t.Fatalf("reset of a stream the app had finished made events: %+v", tc.events)
	}

	open(5, false)
	client(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		_ = fr.WriteRSTStream(5, http2.ErrCodeCancel)
	})
	if len(tc.events) != 1 {
		t.Fatalf("got %d events for a reset of a running stream, want 1", len(tc.events))
	}
	if e := tc.events[0]; e.Reason != event.ReasonRSTStream || e.StreamID != 5 || e.HTTP2ErrorCode != uint32(http2.ErrCodeCancel) ||
		e.Method != "/a.S/M" || e.Scope != event.ScopeStream || e.Initiator != event.InitiatorClient || e.ConnectionID != "test-conn" {
		t.Fatalf("event %+v", e)
	}

	open(7, false)
	app(func(fr *http2.Framer) { _ = fr.WriteRSTStream(7, http2.ErrCodeRefusedStream) })
	if state(7) != stateClosed || len(tc.events) != 1 {
		t.Fatalf("an app reset must close the stream without a disconnect event (events %d)", len(tc.events))
	}
	if len(tc.c.streams.open) != 0 {
		t.Fatalf("stream table holds %d streams after all ended", len(tc.c.streams.open))
	}
	// Stream 1 went back to the pool: what its trailers said is on its span.
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := streamSpanStatus(t, rec, 1); got != 5 {
		t.Fatalf("stream 1's span has grpc-status %d, want 5 from the trailers", got)
	}
}

// TestInjectionNeverWaitsBehindAPartialFrame: a DATA frame that has only
// partly arrived goes on in pieces, each a whole DATA frame, so that a
// frame the relay injects meanwhile (its keepalive PING) leaves at once
// even if the sender stalls in the middle of the frame; the pieces carry
// the same payload and END_STREAM only on the last. Only a padded frame,
// which cannot be split, still goes on whole with injection after it.
// Before, the PING waited for the frame's end, and a healthy client could
// be declared dead because its PING never left.
func TestInjectionNeverWaitsBehindAPartialFrame(t *testing.T) {
	tests := []struct {
		name    string
		padded  bool
		wantSeq []string // frames the client gets, in order
	}{
		{"plain DATA", false, []string{"DATA 491", "PING", "DATA 509 END_STREAM", "DATA 4"}},
		{"padded DATA", true, []string{"DATA 1000 END_STREAM", "PING", "DATA 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConn(t)
			payload := bytes.Repeat([]byte("d"), 1000)
			data := frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
				if tt.padded {
					_ = fr.WriteDataPadded(1, true, payload[:1000-11], make([]byte, 10))
				} else {
					_ = fr.WriteData(1, true, payload)
				}
				_ = fr.WriteData(3, false, []byte("next"))
			})
			if err := feed(t, tc.down, data[:500]); err != nil {
				t.Fatal(err)
			}
			ping := appendPing(nil, false, [8]byte{'h', 'g', 'u', 'p'})
			if err := tc.c.toClient.inject(ping); err != nil {
				t.Fatal(err)
			}
			if tt.padded {
				if got := readFrames(t, tc.cli.out.Bytes()); len(got) != 0 {
					t.Fatalf("the PING left inside the padded frame: %v", got)
				}
			} else if got := readFrames(t, tc.cli.out.Bytes()); len(got) != 2 {
				t.Fatalf("after half a frame the client got %v, want its first piece and the PING", got)
			}
			if err := feed(t, tc.down, data[500:]); err != nil {
				t.Fatal(err)
			}
			var seq []string
			var body []byte
			for _, f := range readFrames(t, tc.cli.out.Bytes()) {
				switch f := f.(type) {
				case *dataCopy:
					d := "DATA " + strconv.Itoa(int(f.Length))
					if f.StreamEnded() {
						d += " END_STREAM"
					}
					seq = append(seq, d)
					if f.StreamID == 1 {
						body = append(body, f.data...)
					}
				case *http2.PingFrame:
					seq = append(seq, "PING")
				default:
					seq = append(seq, fmt.Sprintf("%T", f))
				}
			}
			if strings.Join(seq, ", ") != strings.Join(tt.wantSeq, ", ") {
				t.Fatalf("client got %v, want %v", seq, tt.wantSeq)
			}
			want := payload
			if tt.padded {
				want = payload[:1000-11]
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("stream 1 carried %d bytes, want the %d sent", len(body), len(want))
			}
		})
	}
}

// TestAppendHeaderFrames checks the split of a re-encoded block into
// HEADERS and CONTINUATION frames at the app's SETTINGS_MAX_FRAME_SIZE.
func TestAppendHeaderFrames(t *testing.T) {
	tests := []struct {
		name     string
		block    int
		priority bool
		want     int // frames
	}{
		{"fits one frame", 100, false, 1},
		{"exactly one frame", defaultMaxFrameSize, false, 1},
		{"one byte over", defaultMaxFrameSize + 1, false, 2},
		{"priority takes room", defaultMaxFrameSize, true, 2},
		{"three frames", 2*defaultMaxFrameSize + 10, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := bytes.Repeat([]byte{0x82}, tt.block)
			var prio []byte
			if tt.priority {
				prio = []byte{0, 0, 0, 0, 15}
			}
			got := readFrames(t, appendHeaderFrames(nil, 1, true, prio, block, defaultMaxFrameSize))
			if len(got) != tt.want {
				t.Fatalf("%d frames, want %d", len(got), tt.want)
			}
			var joined []byte
			for i, f := range got {
				switch f := f.(type) {
				case *headersCopy:
					if i != 0 || !f.StreamEnded() || f.HasPriority() != tt.priority {
						t.Fatalf("frame %d: bad HEADERS %v", i, f.Header())
					}
					joined = append(joined, f.frag...)
				case *contCopy:
					joined = append(joined, f.frag...)
				}
				ended := f.Header().Flags.Has(http2.FlagHeadersEndHeaders)
				if ended != (i == len(got)-1) {
					t.Fatalf("frame %d END_HEADERS = %v", i, ended)
				}
			}
			if !bytes.Equal(joined, block) {
				t.Fatalf("fragments do not join into the block")
			}
		})
	}
}

// streamSpanStatus returns the rpc.grpc.status_code of the ended span of
// stream id, -1 when that span has none.
func streamSpanStatus(t *testing.T, rec *tracetest.SpanRecorder, id int64) int64 {
	t.Helper()
	for _, sp := range rec.Ended() {
		var isStream bool
		code := int64(-1)
		for _, kv := range sp.Attributes() {
			switch kv.Key {
			case telemetry.AttrStreamID:
				isStream = kv.Value.AsInt64() == id
			case semconv.RPCGRPCStatusCodeKey:
				code = kv.Value.AsInt64()
			}
		}
		if isStream {
			return code
		}
	}
	t.Fatalf("no ended span for stream %d among %d spans", id, len(rec.Ended()))
	return 0
}
