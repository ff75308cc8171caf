package proxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// idleConns is how many connections BenchmarkIdleMemory holds: issue 15's
// figure is per idle connection at 1,000.
const idleConns = 1000

// liveBytes is the process's live heap and goroutine stacks after a full
// collection: what a connection holds, without the collector's headroom.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// memApp is the app side of a memory benchmark: it accepts without a
// goroutine per connection and answers by hand, so that the heap a
// connection adds beyond the direct case is the relay's.
type memApp struct {
	ln    net.Listener
	conns chan net.Conn
}

func startMemApp(b *testing.B) *memApp {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	a := &memApp{ln: ln, conns: make(chan net.Conn, idleConns)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.conns <- c
		}
	}()
	b.Cleanup(func() { _ = ln.Close(); <-done })
	return a
}

// memConn is one idle HTTP/2 connection as both ends see it.
type memConn struct {
	client *h2raw.Client
	app    net.Conn
	appFr  *http2.Framer
}

// open dials addr (the app itself, or a relay in front of it) and
// completes the SETTINGS exchange both ways, so that the connection is an
// established, idle HTTP/2 connection at every hop.
func (a *memApp) open(addr string) (*memConn, error) {
	c, err := h2raw.Dial(addr)
	if err != nil {
		return nil, err
	}
	var app net.Conn
	select {
	case app = <-a.conns:
	case <-time.After(5 * time.Second):
		c.Close()
		return nil, errors.New("the app was not dialled")
	}
	m := &memConn{client: c, app: app, appFr: http2.NewFramer(app, app)}
	_ = app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(app, make([]byte, len(http2.ClientPreface))); err != nil {
		m.close()
		return nil, err
	}
	if err := m.appFr.WriteSettings(); err != nil {
		m.close()
		return nil, err
	}
	if err := m.appReadUntil(http2.FrameSettings); err != nil {
		m.close()
		return nil, err
	}
	if err := m.appFr.WriteSettingsAck(); err != nil {
		m.close()
		return nil, err
	}
	gotSettings, gotAck := false, false
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if sf.IsAck() {
				gotAck = true
			} else {
				gotSettings = true
				_ = c.Framer.WriteSettingsAck()
			}
		}
		return gotSettings && gotAck
	}); err != nil {
		m.close()
		return nil, err
	}
	return m, m.appReadUntil(http2.FrameSettings) // the client's ACK
}

// appReadUntil reads frames on the app side until one of type ft.
func (m *memConn) appReadUntil(ft http2.FrameType) error {
	_ = m.app.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer m.app.SetReadDeadline(time.Time{})
	for {
		f, err := m.appFr.ReadFrame()
		if err != nil {
			return err
		}
		if f.Header().Type == ft {
			return nil
		}
	}
}

// openStream opens stream 1 from the client and answers its HEADERS from
// the app, so that every hop holds an open stream with both header blocks
// seen.
func (m *memConn) openStream() error {
	if err := m.client.OpenStream(1, h2raw.GRPCRequest(h2raw.FullDuplex)); err != nil {
		return err
	}
	if err := m.appReadUntil(http2.FrameHeaders); err != nil {
		return err
	}
	var blk bytes.Buffer
	enc := hpack.NewEncoder(&blk)
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	if err := m.appFr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	_, err := m.client.ReadUntil(5*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameHeaders })
	return err
}

func (m *memConn) close() {
	_ = m.client.Close()
	_ = m.app.Close()
}

// ioCopyRelay is the baseline: a plain Go TCP relay, two io.Copy
// goroutines per connection (what bench/tcprelay runs as a process).
func ioCopyRelay(b *testing.B, upstream string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
		}
	}()
	b.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// hangupRelay runs proxy.Server in front of upstream with the sidecar's
// defaults (parking after its default quiet time).
func hangupRelay(b *testing.B, upstream string) string {
	b.Helper()
	srv, err := proxy.New(proxy.Config{
		Upstream: proxy.Address{Network: "tcp", Address: upstream},
		Sink:     event.SinkFunc(func(event.Event) {}),
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			b.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// settle waits until at most n goroutines run (the relay's forwarders
// have parked), failing after d.
func settle(b *testing.B, n int, d time.Duration) {
	b.Helper()
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines after %v, want at most %d: the connections did not park", runtime.NumGoroutine(), d, n)
		}
		runtime.Gosched()
	}
}

// idleMemory opens idleConns connections to addr, then one stream on each,
// and returns the live bytes each step added per connection. base is the
// goroutines that run without connections (the relays' pollers counted),
// goroutines how many each connection may keep once idle.
func idleMemory(b *testing.B, app *memApp, addr string, base, goroutines int) (perConn, perStream float64) {
	b.Helper()
	settle(b, base, 10*time.Second) // the previous run's connections are gone
	before := liveBytes()
	conns := make([]*memConn, 0, idleConns)
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for i := range idleConns {
		c, err := app.open(addr)
		if err != nil {
			b.Fatalf("connection %d: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	settle(b, base+goroutines*idleConns, 10*time.Second)
	withConns := liveBytes()
	for i, c := range conns {
		if err := c.openStream(); err != nil {
			b.Fatalf("stream on connection %d: %v", i+1, err)
		}
	}
	settle(b, base+goroutines*idleConns, 10*time.Second)
	withStreams := liveBytes()
	return (float64(withConns) - float64(before)) / idleConns, (float64(withStreams) - float64(withConns)) / idleConns
}

// BenchmarkIdleMemory reports the live heap and stacks (runtime.MemStats
// after a collection) that an idle HTTP/2 connection and an idle open
// stream add through hangup's relay, beside a plain io.Copy relay in the
// same run, each over the direct connection's own cost (the client's and
// the app's sockets live in this process too). Issue 15's targets are
// RSS: at most 4 KiB per idle connection and 2 KiB per stream; the
// collector's headroom comes on top of these live figures.
// Run: go test -run '^$' -bench IdleMemory -benchtime 1x -count 6 ./pkg/proxy
func BenchmarkIdleMemory(b *testing.B) {
	if !park.Supported {
		b.Skip("sockets cannot park: the portable fallback is built in")
	}
	app := startMemApp(b)
	copyAddr, hangupAddr := ioCopyRelay(b, app.ln.Addr().String()), hangupRelay(b, app.ln.Addr().String())
	// The poller's goroutine starts with the first parked socket and
	// stays: it is allowed from the start.
	base := runtime.NumGoroutine() + 1
	var dc, ds, cc, cs, hc, hs float64
	b.ResetTimer()
	for range b.N {
		dc, ds = idleMemory(b, app, app.ln.Addr().String(), base, 0)
		cc, cs = idleMemory(b, app, copyAddr, base, 2)
		hc, hs = idleMemory(b, app, hangupAddr, base, 0)
	}
	b.StopTimer()
	b.ReportMetric(hc-dc, "hangup-B/conn")
	b.ReportMetric(hs-ds, "hangup-B/stream")
	b.ReportMetric(cc-dc, "iocopy-B/conn")
	b.ReportMetric(cs-ds, "iocopy-B/stream")
	b.ReportMetric((hc-dc)/(cc-dc), "hangup/iocopy-conn")
}

// churnAlloc opens and closes n connections to addr one at a time, each
// through its SETTINGS exchange, waiting after each close until at most
// base goroutines run, and returns the bytes the process allocated per
// connection.
func churnAlloc(b *testing.B, app *memApp, addr string, base, n int) float64 {
	b.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := range n {
		c, err := app.open(addr)
		if err != nil {
			b.Fatalf("connection %d: %v", i+1, err)
		}
		c.close()
		settle(b, base, 10*time.Second)
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n)
}

// BenchmarkConnChurn reports the bytes allocated per connection that
// opens, exchanges SETTINGS and closes through hangup's relay, over the
// direct connection's own in the same run (the client's and the app's
// ends live in this process too): the garbage a short-lived connection
// leaves for the collector.
// Run: go test -run '^$' -bench ConnChurn -benchtime 1000x -count 6 ./pkg/proxy
func BenchmarkConnChurn(b *testing.B) {
	if !park.Supported {
		b.Skip("sockets cannot park: the portable fallback is built in")
	}
	app := startMemApp(b)
	hangupAddr := hangupRelay(b, app.ln.Addr().String())
	base := runtime.NumGoroutine() + 1 // the poller's, once a socket parked
	b.ResetTimer()
	direct := churnAlloc(b, app, app.ln.Addr().String(), base, b.N)
	relayed := churnAlloc(b, app, hangupAddr, base, b.N)
	b.StopTimer()
	b.ReportMetric(relayed-direct, "hangup-B/conn")
	b.ReportMetric(relayed/direct, "relayed/direct-B")
}
