package proxy

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fuzzFeed hands data to a forwarder in reads of the sizes cuts gives (at
// most what the buffer has room for), stopping at the first error, as the
// relay would.
func fuzzFeed(t *testing.T, f *forwarder, data, cuts []byte) {
	for len(data) > 0 {
		n := len(data)
		if len(cuts) > 0 {
			n = min(n, int(cuts[0])+1)
			cuts = cuts[1:]
		}
		if err := feed(t, f, data[:n]); err != nil {
			var ce connError
			if !errors.As(err, &ce) || ce.Code == 0 && ce.Reason == "" {
				t.Fatalf("error %v is not a connection error", err)
			}
			return
		}
		data = data[n:]
	}
}

// checkOutput parses what the relay wrote: it must be whole, well-framed
// frames, however bad the input was.
func checkOutput(t *testing.T, out []byte) {
	t.Helper()
	for len(out) > 0 {
		if len(out) < frameHeaderLen {
			t.Fatalf("relay output ends with %d bytes of a frame header", len(out))
		}
		n := frameHeaderLen + int(parseFrameHeader(out).Length)
		if n > len(out) {
			t.Fatalf("relay output ends inside a %d-byte frame (%d bytes left)", n, len(out))
		}
		out = out[n:]
	}
}

// FuzzClientFrames feeds arbitrary bytes as frames from a client, split
// into arbitrary reads: the relay never panics, only ends with a
// connection error, writes whole frames, and its stream table holds only
// live client streams.
func FuzzClientFrames(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, []byte{3, 200, 7})
	}
	f.Add(bigFrameSeed(), []byte{0x80 | 100, 255, 255})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		tc := newTestConn(t)
		if len(cuts) > 0 && cuts[0]&0x80 != 0 {
			// An app that accepts frames larger than the read buffer, so
			// that the client's may grow it.
			tc.c.appMaxFrame.Store(bigFrameSize)
		}
		fuzzFeed(t, tc.up, data, cuts)
		checkStreamTable(t, &tc.c.streams)
		if !tc.up.blk.active && tc.up.passLeft == 0 {
			checkOutput(t, tc.app.out.Bytes())
		}
	})
}

// FuzzAppFrames does the same from the app's side.
func FuzzAppFrames(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, []byte{0, 15, 100})
	}
	f.Add(bigFrameSeed(), []byte{255, 255, 255})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		tc := newTestConn(t)
		fuzzFeed(t, tc.down, data, cuts)
		if !tc.down.blk.active && tc.down.passLeft == 0 {
			checkOutput(t, tc.cli.out.Bytes())
		}
	})
}

// FuzzHeaderRewrite re-encodes arbitrary header lists as the relay does:
// a client's hpack encoder makes the blocks, the relay's decoder decodes
// them (remembering the blocks that repeat, the memo) and its encoder
// re-encodes them, from the memo when it can. The app must decode exactly
// the client's fields, without any x-hangup-* the client sent, plus the
// relay's two ids. Each list goes through three times, the last with one
// value changed, so that blocks from the memo and encodings copied from
// the previous block are checked too.
func FuzzHeaderRewrite(f *testing.F) {
	f.Add("x-user", "alice", "x-hangup-stream-id", "7", uint16(4096))
	f.Add("grpc-timeout", "1S", "te", "trailers", uint16(0))
	f.Add("", "", "x-hangup-connection-id", "forged", uint16(100))
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string, table uint16) {
		var cb bytes.Buffer
		clientEnc := hpack.NewEncoder(&cb)
		relayDec := newHeaderDecoder(DefaultMaxHeaderListSize)
		enc := newRequestEncoder()
		enc.setTableLimit(uint32(table))
		dec := hpack.NewDecoder(uint32(table), nil)
		memos := 0
		for i, v := range []string{v2, v2, v2 + "x"} {
			fields := []hpack.HeaderField{{Name: ":path", Value: "/a.S/M"}, {Name: n1, Value: v1}, {Name: n2, Value: v, Sensitive: len(v)%2 == 1}}
			cb.Reset()
			for _, f := range fields {
				_ = clientEnc.WriteField(f)
			}
			decoded, memo, err := relayDec.decode(cb.Bytes())
			if err != nil {
				t.Fatalf("block %d: the relay cannot decode the client's block: %v", i, err)
			}
			if memo != nil {
				memos++
			}
			block := enc.encode(decoded, memo, true, "conn", 9, traceContext{}, -1)
			got, err := dec.DecodeFull(block)
			if err != nil {
				t.Fatalf("block %d: the app cannot decode the relay's block: %v", i, err)
			}
			var want []hpack.HeaderField
			for _, f := range fields {
				if f.Name != HeaderConnectionID && f.Name != HeaderStreamID {
					want = append(want, hpack.HeaderField{Name: f.Name, Value: f.Value})
				}
			}
			want = append(want, hpack.HeaderField{Name: HeaderConnectionID, Value: "conn"}, hpack.HeaderField{Name: HeaderStreamID, Value: "9"})
			if !equalFields(got, want) {
				t.Fatalf("block %d: app decoded %v, want %v", i, got, want)
			}
		}
		if n1 == "x-user" && v1 == "alice" && memos == 0 {
			// The first seed repeats a small block: it must come from the
			// memo, or this fuzzer no longer reaches it.
			t.Fatal("no block came from the decoder's memo")
		}
	})
}

// bigFrameSize is a frame size larger than the read buffer.
const bigFrameSize = 3 * readBufSize / 2

// bigFrameSeed is a request whose HEADERS frame is larger than the read
// buffer, then DATA as large: the relay must grow its buffer for the
// first and pass the second on as it comes.
func bigFrameSeed() []byte {
	var b, hb bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.AllowIllegalWrites = true
	block := request(hpack.NewEncoder(&hb), &hb, "/a.S/Big", hpack.HeaderField{Name: "x-big", Value: string(bytes.Repeat([]byte("v"), bigFrameSize-200))})
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
	_ = fr.WriteData(1, true, make([]byte, bigFrameSize-100))
	return b.Bytes()
}

// fuzzSeeds are frame sequences worth starting from: requests, trailers,
// CONTINUATION, padding, resets, settings, pings, GOAWAY.
func fuzzSeeds() [][]byte {
	var out [][]byte
	add := func(write func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) {
		var b, hb bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		write(fr, hpack.NewEncoder(&hb), &hb)
		out = append(out, b.Bytes())
	}
	add(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("hello"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: request(enc, hb, "/a.S/M"), EndHeaders: true, EndStream: true})
	})
	add(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		block := request(enc, hb, "/a.S/Long", hpack.HeaderField{Name: "x-big", Value: string(bytes.Repeat([]byte("v"), 300))})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:10], PadLength: 4, Priority: http2.PriorityParam{Weight: 9}})
		_ = fr.WriteContinuation(3, false, block[10:100])
		_ = fr.WriteContinuation(3, true, block[100:])
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	add(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WritePing(true, [8]byte{'h', 'g', 'u', 'p', 0, 0, 0, 1})
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WriteGoAway(5, http2.ErrCodeNo, []byte("bye"))
		_ = fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true})
	})
	return out
}

// TestFramesLargerThanTheReadBuffer relays bigFrameSeed both ways in reads
// no larger than the buffer: the HEADERS frame grows the buffer and goes
// on whole (re-encoded toward the app), and the DATA frame goes on in
// pieces with every payload byte.
func TestFramesLargerThanTheReadBuffer(t *testing.T) {
	seed := bigFrameSeed()
	for _, dir := range []string{"client to app", "app to client"} {
		t.Run(dir, func(t *testing.T) {
			tc := newTestConn(t)
			f, out := tc.up, &tc.app.out
			if dir == "app to client" {
				f, out = tc.down, &tc.cli.out
			}
			tc.c.appMaxFrame.Store(bigFrameSize)
			if err := feed(t, f, seed[:readBufSize]); err != nil {
				t.Fatal(err)
			}
			if len(f.buf) <= readBufSize {
				t.Fatalf("buffer holds %d bytes after the start of a %d-byte frame: not grown", len(f.buf), bigFrameSize)
			}
			fuzzFeed(t, f, seed[readBufSize:], nil)
			var data int
			headers := false
			for _, fr := range readFrames(t, out.Bytes()) {
				switch fr := fr.(type) {
				case *headersCopy:
					headers = true
				case *dataCopy:
					data += len(fr.data)
				}
			}
			if !headers || data != bigFrameSize-100 {
				t.Fatalf("relayed HEADERS %v and %d DATA bytes, want HEADERS and %d", headers, data, bigFrameSize-100)
			}
			checkOutput(t, out.Bytes())
		})
	}
}

// checkStreamTable fails when the table holds anything but live client
// streams: a closed stream left behind, an even id, one above the newest
// opened, or one filed under another id.
func checkStreamTable(t *testing.T, tab *streamTable) {
	t.Helper()
	for id, s := range tab.open {
		switch {
		case s.id != id:
			t.Fatalf("stream %d filed under id %d", s.id, id)
		case id%2 == 0 || id > tab.lastClientID:
			t.Fatalf("stream %d in the table: not a client stream opened so far (newest %d)", id, tab.lastClientID)
		case s.state == stateClosed:
			t.Fatalf("stream %d is closed but still in the table", id)
		}
	}
}
