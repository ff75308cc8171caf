package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// callsPerBatch is how many unary calls one socket read holds in
// BenchmarkUnaryCalls: h2load's 32 streams per connection fill a read with
// several.
const callsPerBatch = 8

// unaryTraffic writes the wire bytes of unary gRPC calls as a client and an
// app send them: each call is request HEADERS and DATA(END_STREAM), then
// response HEADERS, DATA and trailers HEADERS(END_STREAM).
type unaryTraffic struct {
	cli, app     *hpack.Encoder
	cliBuf       bytes.Buffer
	appBuf       bytes.Buffer
	next         uint32 // next client stream id
	vary         bool   // each request carries a grpc-timeout of its own
	msg          []byte // a gRPC message with its 5-byte prefix
	reqs, resps  []byte
	timeoutValue int
}

func newUnaryTraffic(vary bool) *unaryTraffic {
	u := &unaryTraffic{next: 1, vary: vary, msg: make([]byte, 5+100)}
	u.cli, u.app = hpack.NewEncoder(&u.cliBuf), hpack.NewEncoder(&u.appBuf)
	u.msg[4] = 100
	return u
}

// requestBlock encodes a request like h2load (nghttp2) does: :path and
// content-length are never added to the dynamic table, so once the table
// holds the rest, every block is the same bytes.
func (u *unaryTraffic) requestBlock() []byte {
	u.cliBuf.Reset()
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/grpc.testing.TestService/UnaryCall", Sensitive: true},
		{Name: ":authority", Value: "127.0.0.1:8080"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"}, {Name: "content-length", Value: "105", Sensitive: true},
		{Name: "user-agent", Value: "h2load nghttp2/1.64.0"},
	} {
		_ = u.cli.WriteField(f)
	}
	if u.vary {
		// grpc-go's client sends the time left of the deadline, indexed.
		u.timeoutValue++
		_ = u.cli.WriteField(hpack.HeaderField{Name: "grpc-timeout", Value: strconv.Itoa(u.timeoutValue) + "u"})
	}
	return u.cliBuf.Bytes()
}

// batch appends n calls to u.reqs and u.resps, replacing what they held.
func (u *unaryTraffic) batch(n int) {
	u.reqs, u.resps = u.reqs[:0], u.resps[:0]
	for range n {
		id := u.next
		u.next += 2
		block := u.requestBlock()
		u.reqs = appendFrameHeader(u.reqs, frameHeader{Length: uint32(len(block)), Type: http2.FrameHeaders,
			Flags: http2.FlagHeadersEndHeaders, StreamID: id})
		u.reqs = append(u.reqs, block...)
		u.reqs = appendFrameHeader(u.reqs, frameHeader{Length: uint32(len(u.msg)), Type: http2.FrameData,
			Flags: http2.FlagDataEndStream, StreamID: id})
		u.reqs = append(u.reqs, u.msg...)

		u.appBuf.Reset()
		_ = u.app.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = u.app.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		u.resps = appendFrameHeader(u.resps, frameHeader{Length: uint32(u.appBuf.Len()), Type: http2.FrameHeaders,
			Flags: http2.FlagHeadersEndHeaders, StreamID: id})
		u.resps = append(u.resps, u.appBuf.Bytes()...)
		u.resps = appendFrameHeader(u.resps, frameHeader{Length: uint32(len(u.msg)), Type: http2.FrameData, StreamID: id})
		u.resps = append(u.resps, u.msg...)
		u.appBuf.Reset()
		_ = u.app.WriteField(hpack.HeaderField{Name: "grpc-status", Value: "0"})
		_ = u.app.WriteField(hpack.HeaderField{Name: "grpc-message", Value: ""})
		u.resps = appendFrameHeader(u.resps, frameHeader{Length: uint32(u.appBuf.Len()), Type: http2.FrameHeaders,
			Flags: http2.FlagHeadersEndHeaders | http2.FlagHeadersEndStream, StreamID: id})
		u.resps = append(u.resps, u.appBuf.Bytes()...)
	}
}

// loopbackSink returns the sending end of a loopback TCP connection whose
// other end discards what it reads, so that a benchmark pays for its
// writes as the relay does; both close when the benchmark ends.
func loopbackSink(b *testing.B) net.Conn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, peer)
	}()
	b.Cleanup(func() {
		_ = c.Close()
		<-done
		_ = peer.Close()
	})
	return c
}

// BenchmarkUnaryCalls relays unary gRPC calls through both forwarders of
// one conn, sockets left out, with metrics on as the sidecar runs, and
// reports CPU and allocations per call. "repeated headers" is what h2load
// and most gRPC clients send: the same header block bytes on every call.
// "changing header" adds a grpc-timeout that differs on every call, so no
// block repeats: compare the two to see what repeated blocks save. "written
// to loopback TCP" adds the cost of the writes, which depends on how many
// pieces a batch goes out in.
// "same bytes as DATA" forwards a batch of the same size as DATA frames on
// an open stream: the relay's floor, with no stream or header work.
func BenchmarkUnaryCalls(b *testing.B) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	srv, err := New(Config{Upstream: Address{Network: "tcp", Address: "127.0.0.1:1"}, Telemetry: tel,
		Sink: event.SinkFunc(func(event.Event) {})})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Close() }() // stops the poller the TCP case starts
	newForwarders := func(b *testing.B, tcp bool) (up, down *forwarder) {
		var cli, app net.Conn = discardConn{}, discardConn{}
		if tcp {
			cli, app = loopbackSink(b), loopbackSink(b)
		}
		c := newConn(srv, cli, app)
		b.Cleanup(c.stopTimer)
		up = newClientForwarder(c)
		down = newAppForwarder(c)
		up.takeBatch()
		down.takeBatch()
		up.growTo(readBufSize) // a busy connection's buffers
		down.growTo(readBufSize)
		return up, down
	}
	relay := func(b *testing.B, up, down *forwarder, u *unaryTraffic) {
		up.n = copy(up.buf, u.reqs)
		if err := up.process(); err != nil {
			b.Fatal(err)
		}
		down.n = copy(down.buf, u.resps)
		if err := down.process(); err != nil {
			b.Fatal(err)
		}
	}
	// report adds the figures per call; call it with the timer stopped.
	report := func(b *testing.B, allocs float64) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/callsPerBatch, "ns/call")
		b.ReportMetric(allocs/callsPerBatch, "allocs/call")
	}

	for _, tc := range []struct {
		name      string
		vary, tcp bool
	}{
		{"repeated headers", false, false},
		{"changing header", true, false},
		{"repeated headers written to loopback TCP", false, true},
	} {
		vary := tc.vary
		b.Run(tc.name, func(b *testing.B) {
			up, down := newForwarders(b, tc.tcp)
			u := newUnaryTraffic(vary)
			// Warm up: the peers' and the relay's hpack tables fill.
			for range 4 {
				u.batch(callsPerBatch)
				relay(b, up, down, u)
			}
			// The calls are made ahead, a chunk at a time, so that the
			// peers' hpack encoding is not measured.
			const chunk = 256
			reqs, resps := make([][]byte, chunk), make([][]byte, chunk)
			fill := func() {
				for i := range chunk {
					u.batch(callsPerBatch)
					reqs[i], resps[i] = append(reqs[i][:0], u.reqs...), append(resps[i][:0], u.resps...)
				}
			}
			fill()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%chunk == 0 && i > 0 {
					b.StopTimer()
					fill()
					b.StartTimer()
				}
				u.reqs, u.resps = reqs[i%chunk], resps[i%chunk]
				relay(b, up, down, u)
			}
			b.StopTimer()
			// Relay the rest of the chunk first: the relay's hpack
			// decoder must see every block the client encoded.
			for i := b.N % chunk; i > 0 && i < chunk; i++ {
				u.reqs, u.resps = reqs[i], resps[i]
				relay(b, up, down, u)
			}
			fill()
			i := 0
			allocs := testing.AllocsPerRun(chunk-1, func() {
				u.reqs, u.resps = reqs[i], resps[i]
				i++
				relay(b, up, down, u)
			})
			report(b, allocs)
		})
	}
	b.Run("same bytes as DATA", func(b *testing.B) {
		up, down := newForwarders(b, false)
		u := newUnaryTraffic(false)
		u.batch(callsPerBatch)
		up.c.streams.start(1, up.c.start)
		asData := func(n int) []byte {
			var out []byte
			out = appendFrameHeader(out, frameHeader{Length: uint32(n - frameHeaderLen), Type: http2.FrameData, StreamID: 1})
			return append(out, make([]byte, n-frameHeaderLen)...)
		}
		u.reqs, u.resps = asData(len(u.reqs)), asData(len(u.resps))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			relay(b, up, down, u)
		}
		b.StopTimer()
		report(b, testing.AllocsPerRun(100, func() { relay(b, up, down, u) }))
	})
}
