package proxy

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fuzzFeed hands data to a forwarder in reads of the sizes cuts gives,
// stopping at the first error, as the relay would.
func fuzzFeed(t *testing.T, f *forwarder, data, cuts []byte) {
	for len(data) > 0 {
		n := len(data)
		if len(cuts) > 0 {
			n = min(n, int(cuts[0])+1)
			cuts = cuts[1:]
		}
		n = min(n, readBufSize-f.n)
		if n == 0 {
			return // a frame larger than the buffer: grown only by real reads
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
// connection error, writes whole frames, and its stream table stays bounded
// by the streams it opened.
func FuzzClientFrames(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed, []byte{3, 200, 7})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		tc := newTestConn(t)
		fuzzFeed(t, tc.up, data, cuts)
		if uint64(len(tc.c.streams.open)) > tc.c.streams.opened {
			t.Fatalf("%d streams open, %d ever opened", len(tc.c.streams.open), tc.c.streams.opened)
		}
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
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		tc := newTestConn(t)
		fuzzFeed(t, tc.down, data, cuts)
		if !tc.down.blk.active && tc.down.passLeft == 0 {
			checkOutput(t, tc.cli.out.Bytes())
		}
	})
}

// FuzzHeaderRewrite re-encodes arbitrary header lists: the app must decode
// exactly the client's fields, without any x-hangup-* the client sent, plus
// the relay's two ids. Each list goes through the same encoder three
// times, the last with one value changed, so that encodings copied from
// the previous block are checked too.
func FuzzHeaderRewrite(f *testing.F) {
	f.Add("x-user", "alice", "x-hangup-stream-id", "7", uint16(4096))
	f.Add("grpc-timeout", "1S", "te", "trailers", uint16(0))
	f.Add("", "", "x-hangup-connection-id", "forged", uint16(100))
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string, table uint16) {
		enc := newRequestEncoder()
		enc.setTableLimit(uint32(table))
		dec := hpack.NewDecoder(uint32(table), nil)
		for i, v := range []string{v2, v2, v2 + "x"} {
			fields := []hpack.HeaderField{{Name: ":path", Value: "/a.S/M"}, {Name: n1, Value: v1}, {Name: n2, Value: v, Sensitive: len(v)%2 == 1}}
			block := enc.encode(fields, nil, true, "conn", 9, traceContext{})
			got, err := dec.DecodeFull(block)
			if err != nil {
				t.Fatalf("block %d: the app cannot decode the relay's block: %v", i, err)
			}
			var want []hpack.HeaderField
			for _, f := range fields {
				if f.Name != HeaderConnectionID && f.Name != HeaderStreamID {
					want = append(want, f)
				}
			}
			want = append(want, hpack.HeaderField{Name: HeaderConnectionID, Value: "conn"}, hpack.HeaderField{Name: HeaderStreamID, Value: "9"})
			if !equalFields(got, want) {
				t.Fatalf("block %d: app decoded %v, want %v", i, got, want)
			}
		}
	})
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
