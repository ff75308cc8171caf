package proxy

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/pkg/event"
)

// refuseHarness drives a testConn with a client hpack encoder of its own.
type refuseHarness struct {
	*testConn
	t    *testing.T
	cb   bytes.Buffer
	cenc *hpack.Encoder
}

func newRefuseHarness(t *testing.T) *refuseHarness {
	h := &refuseHarness{testConn: newTestConn(t), t: t}
	h.cenc = hpack.NewEncoder(&h.cb)
	return h
}

// client feeds the client's frames and returns the forwarder's error.
func (h *refuseHarness) client(write func(fr *http2.Framer, block func() []byte)) error {
	h.t.Helper()
	return feed(h.t, h.up, frames(h.t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		write(fr, func() []byte { return request(h.cenc, &h.cb, "/a.S/M") })
	}))
}

func (h *refuseHarness) open(id uint32) {
	h.t.Helper()
	if err := h.client(func(fr *http2.Framer, block func() []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block(), EndHeaders: true})
	}); err != nil {
		h.t.Fatalf("open stream %d: %v", id, err)
	}
}

func (h *refuseHarness) app(write func(fr *http2.Framer)) {
	h.t.Helper()
	if err := feed(h.t, h.down, frames(h.t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) { write(fr) })); err != nil {
		h.t.Fatalf("app frames: %v", err)
	}
}

// TestAppGoAwayForgetsUnprocessedStreams: the app's GOAWAY(last=1) while
// streams 1 and 3 are open. Stream 3 was never processed: it leaves the
// table (it no longer counts against the limit), a new stream is refused,
// and when the client then leaves only stream 1 is reported. Before, stream
// 3 was reported as CONNECTION_CLOSED by the client and kept its place.
func TestAppGoAwayForgetsUnprocessedStreams(t *testing.T) {
	h := newRefuseHarness(t)
	h.open(1)
	h.open(3)
	h.app(func(fr *http2.Framer) { _ = fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye")) })
	if n := len(h.c.streams.open); n != 1 || h.c.streams.get(1) == nil {
		t.Fatalf("after the app's GOAWAY(1) the table holds %d streams, want stream 1 only", n)
	}
	sent := h.appOut().Len()
	h.open(5)
	if h.appOut().Len() != sent {
		t.Fatal("a stream opened after the app's GOAWAY reached the app")
	}
	if got := readFrames(t, h.cli.out.Bytes()); !hasRST(got, 5, http2.ErrCodeRefusedStream) {
		t.Fatalf("client got %v, want RST_STREAM(5, REFUSED_STREAM)", got)
	}
	h.c.clientLost(event.ReasonConnectionClosed, event.InitiatorClient, 0, "")
	var streams []uint32
	for _, e := range h.events {
		if e.Scope == event.ScopeStream {
			streams = append(streams, e.StreamID)
		}
	}
	if len(streams) != 1 || streams[0] != 1 {
		t.Fatalf("events for streams %v, want stream 1 only", streams)
	}
}

// appOut is the app socket's output.
func (tc *testConn) appOut() *bytes.Buffer { return &tc.app.out }

func hasRST(frames []http2.Frame, id uint32, code http2.ErrCode) bool {
	for _, f := range frames {
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == id && r.ErrCode == code {
			return true
		}
	}
	return false
}

// TestFramesOnRefusedStreamsNeverReachTheApp: once the final GOAWAY is out
// (last=1), a client whose HEADERS for stream 3 crossed it gets
// RST_STREAM(REFUSED_STREAM); its DATA (whole, and split over reads),
// WINDOW_UPDATE, PRIORITY, trailers and RST_STREAM on stream 3 never reach
// the app, for which stream 3 is idle, and the connection window the
// dropped DATA used is given back. Stream 1 runs on. Before, those frames
// were forwarded and a strict app ended the connection.
func TestFramesOnRefusedStreamsNeverReachTheApp(t *testing.T) {
	h := newRefuseHarness(t)
	h.open(1)
	h.c.refuse.goAwayLocked(h.c.streams.lastClientID) // what GoAwayFinal does
	sent := h.appOut().Len()
	h.open(3)
	big := make([]byte, 20000)
	if err := h.client(func(fr *http2.Framer, block func() []byte) {
		_ = fr.WriteData(3, false, []byte("hello"))
		_ = fr.WriteWindowUpdate(3, 100)
		_ = fr.WritePriority(3, http2.PriorityParam{Weight: 3})
	}); err != nil {
		t.Fatal(err)
	}
	whole := frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) { _ = fr.WriteData(3, false, big[:16000]) })
	for _, part := range chunks(whole, 5000) {
		if err := feed(t, h.up, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.client(func(fr *http2.Framer, block func() []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(), EndHeaders: true, EndStream: true})
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.appOut().Len(); got != sent {
		t.Fatalf("the app got %d bytes of frames on the refused stream: %v", got-sent, readFrames(t, h.appOut().Bytes()[sent:]))
	}
	var refunded uint32
	got := readFrames(t, h.cli.out.Bytes())
	for _, f := range got {
		if w, ok := f.(*http2.WindowUpdateFrame); ok && w.StreamID == 0 {
			refunded += w.Increment
		}
	}
	if !hasRST(got, 3, http2.ErrCodeRefusedStream) || refunded != 5+16000 {
		t.Fatalf("client got %v (connection window given back: %d), want RST_STREAM(3, REFUSED_STREAM) and %d", got, refunded, 5+16000)
	}
	if err := h.client(func(fr *http2.Framer, _ func() []byte) { _ = fr.WriteData(1, false, []byte("still")) }); err != nil {
		t.Fatal(err)
	}
	if last := readFrames(t, h.appOut().Bytes()[sent:]); len(last) != 1 || last[0].Header().StreamID != 1 {
		t.Fatalf("the app got %v, want stream 1's DATA", last)
	}
}

// TestHeadersOnClosedStreams: HEADERS on a stream both sides ended is a
// connection error the relay answers itself, but HEADERS that crossed the
// app's own RST_STREAM go to the app, which ignores them.
func TestHeadersOnClosedStreams(t *testing.T) {
	h := newRefuseHarness(t)
	h.open(1)
	h.open(3)
	h.app(func(fr *http2.Framer) { _ = fr.WriteRSTStream(3, http2.ErrCodeInternal) })
	if err := h.client(func(fr *http2.Framer, block func() []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(), EndHeaders: true, EndStream: true})
	}); err != nil {
		t.Fatalf("trailers that crossed the app's reset: %v", err)
	}
	err := h.client(func(fr *http2.Framer, block func() []byte) {
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(), EndHeaders: true})
	})
	var ce connError
	if !asConnError(err, &ce) || ce.Code != http2.ErrCodeProtocol {
		t.Fatalf("HEADERS on a stream the client reset: err %v, want a PROTOCOL_ERROR connection error", err)
	}
}
