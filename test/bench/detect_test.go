package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// clientEnv makes the bench binary a client process: it opens a stream to
// the address in the variable, says "ready" and waits to be killed.
const clientEnv = "HANGUP_BENCH_CLIENT"

func TestMain(m *testing.M) {
	if addr := os.Getenv(clientEnv); addr != "" {
		c := openStream(addr, 1)
		fmt.Println("ready")
		buf := make([]byte, 1)
		_, _ = c.Conn.Read(buf) // until killed
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// detectEnv is an app, a DisconnectNotify receiver and the relay, in process.
type detectEnv struct {
	addr   string
	events chan time.Time    // when the relay published each event
	recv   *demoapp.Receiver // what the app received
	closer func()
}

func startDetect(b *testing.B, withNotify bool) *detectEnv {
	b.Helper()
	app := demoapp.New(0)
	app.Ended = nil
	gs := grpc.NewServer()
	app.Register(gs)
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = gs.Serve(appLn) }()
	d := &detectEnv{events: make(chan time.Time, 1<<16), recv: demoapp.NewReceiver(1 << 16)}
	var sink event.Sink = event.SinkFunc(func(event.Event) {
		select {
		case d.events <- time.Now():
		default:
		}
	})
	ns := grpc.NewServer()
	var notifier *notify.Notifier
	if withNotify {
		notifyv1.RegisterDisconnectNotifyServer(ns, d.recv)
		nl, _ := net.Listen("tcp", "127.0.0.1:0")
		go func() { _ = ns.Serve(nl) }()
		var err error
		if notifier, err = notify.New(notify.Config{Addr: nl.Addr().String(), QueueSize: 1 << 16}); err != nil {
			b.Fatal(err)
		}
		sink = notifier
	}
	srv, err := proxy.New(proxy.Config{Upstream: proxy.Address{Network: "tcp", Address: appLn.Addr().String()}, Sink: sink})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	d.addr = ln.Addr().String()
	d.closer = func() {
		_ = srv.Close()
		if notifier != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = notifier.Close(ctx)
			cancel()
		}
		ns.Stop()
		gs.Stop()
	}
	b.Cleanup(d.closer)
	return d
}

// openStream opens n streams whose handlers run; it panics on failure,
// as it also runs in the client process that has no *testing.B.
func openStream(addr string, n int) *h2raw.Client {
	c, err := h2raw.DialStreams(addr, n)
	if err != nil {
		panic(err)
	}
	return c
}

func waitEvent(b *testing.B, ch chan time.Time) time.Time {
	b.Helper()
	select {
	case t := <-ch:
		return t
	case <-time.After(10 * time.Second):
		b.Fatal("no event within 10s")
	}
	return time.Time{}
}

func reportPercentiles(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(percentile(d, 0.50).Microseconds()), name+"-p50-µs")
	b.ReportMetric(float64(percentile(d, 0.99).Microseconds()), name+"-p99-µs")
}

// BenchmarkDetectRSTStream: a client resets its stream; how long until the
// relay has the event.
func BenchmarkDetectRSTStream(b *testing.B) {
	d := startDetect(b, false)
	var lat []time.Duration
	for range b.N {
		c := openStream(d.addr, 1)
		start := time.Now()
		_ = c.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
		lat = append(lat, waitEvent(b, d.events).Sub(start))
		_ = c.Close() // no stream open: no event
	}
	reportPercentiles(b, "rst-to-event", lat)
}

// BenchmarkDetectKilledClient: a client process with an open stream is
// killed (SIGKILL); how long until the relay has the event.
func BenchmarkDetectKilledClient(b *testing.B) {
	d := startDetect(b, false)
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for range b.N {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), clientEnv+"="+d.addr)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			b.Fatalf("client said %q", line)
		}
		start := time.Now()
		_ = cmd.Process.Kill()
		lat = append(lat, waitEvent(b, d.events).Sub(start))
		waitEvent(b, d.events) // the connection's event
		_ = cmd.Wait()
	}
	reportPercentiles(b, "kill-to-event", lat)
}

// BenchmarkNotifyLatency: a client resets its stream; how long until the
// app's DisconnectNotify has the event.
func BenchmarkNotifyLatency(b *testing.B) {
	d := startDetect(b, true)
	var lat []time.Duration
	for range b.N {
		c := openStream(d.addr, 1)
		start := time.Now()
		_ = c.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
		select {
		case r := <-d.recv.Events:
			lat = append(lat, r.At.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no notification within 10s")
		}
		_ = c.Close()
	}
	reportPercentiles(b, "rst-to-notify", lat)
}

// BenchmarkNotifyBurst: 100 connections with 100 open streams each all
// vanish at once: 10,000 stream events and 100 connection events; how many
// events per second reach the app.
func BenchmarkNotifyBurst(b *testing.B) {
	d := startDetect(b, true)
	const conns, streams = 100, 100
	for range b.N {
		clients := make([]*h2raw.Client, conns)
		for i := range clients {
			clients[i] = openStream(d.addr, streams)
		}
		start := time.Now()
		for _, c := range clients {
			_ = c.Reset()
		}
		want := conns*streams + conns
		for got := 0; got < want; got++ {
			select {
			case <-d.recv.Events:
			case <-time.After(30 * time.Second):
				b.Fatalf("%d of %d events after 30s", got, want)
			}
		}
		b.ReportMetric(float64(want)/time.Since(start).Seconds(), "events/s")
	}
}
