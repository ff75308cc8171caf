// Package bench measures the relay against direct calls in the same run:
// `make bench` prints each figure and its ratio to direct.
package bench

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// paths are the ways to the same app that the benchmarks compare.
type paths struct {
	direct testgrpc.TestServiceClient
	// splice goes through spliceRelay: the limit of a byte-forwarding
	// relay, bench/tcprelay in process.
	splice testgrpc.TestServiceClient
	hangup testgrpc.TestServiceClient
}

// setup starts the app, the relay and a splice relay, and returns a client
// for each path.
func setup(b *testing.B) paths {
	b.Helper()
	app := demoapp.New(0)
	app.Ended = nil
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(4<<20), grpc.MaxSendMsgSize(4<<20))
	app.Register(gs)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gs.Serve(appLn) }()
	b.Cleanup(gs.Stop)

	srv, err := proxy.New(proxy.Config{Upstream: proxy.Address{Network: "tcp", Address: appLn.Addr().String()}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	spliceAddr := spliceRelay(b, appLn.Addr().String())

	dial := func(addr string) testgrpc.TestServiceClient {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cc.Close() })
		return testgrpc.NewTestServiceClient(cc)
	}
	return paths{direct: dial(appLn.Addr().String()), splice: dial(spliceAddr), hangup: dial(ln.Addr().String())}
}

// spliceRelay is bench/tcprelay in process, the yardstick of issue 15's
// streaming target: each connection is joined to a new one to upstream
// with io.Copy both ways, which between two TCPConns splices on Linux, so
// the bytes never enter user space. It returns its address; its goroutines
// end in the benchmark's cleanup.
func spliceRelay(b *testing.B, upstream string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn // closed in the cleanup, so that every copy ends
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			track(c)
			track(up)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); _ = c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkUnaryLatency alternates direct and relayed calls, one at a time,
// and reports the latency the relay adds.
func BenchmarkUnaryLatency(b *testing.B) {
	p := setup(b)
	direct, relayed := p.direct, p.hangup
	ctx := context.Background()
	req := &testgrpc.SimpleRequest{ResponseSize: 100, Payload: &testgrpc.Payload{Body: make([]byte, 100)}}
	var dl, rl []time.Duration
	call := func(c testgrpc.TestServiceClient, into *[]time.Duration) {
		start := time.Now()
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(start))
	}
	call(direct, &dl)
	call(relayed, &rl)
	dl, rl = dl[:0], rl[:0]
	b.ResetTimer()
	for range b.N {
		call(direct, &dl)
		call(relayed, &rl)
	}
	b.StopTimer()
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		d, r := percentile(dl, p.q), percentile(rl, p.q)
		b.ReportMetric(float64(d.Microseconds()), "direct-"+p.name+"-µs")
		b.ReportMetric(float64(r.Microseconds()), "hangup-"+p.name+"-µs")
		b.ReportMetric(float64((r - d).Microseconds()), "added-"+p.name+"-µs")
	}
}

// BenchmarkUnaryThroughput runs the same number of calls from 32 concurrent
// callers direct and through the relay and reports calls/s and the ratio.
func BenchmarkUnaryThroughput(b *testing.B) {
	p := setup(b)
	direct, relayed := p.direct, p.hangup
	req := &testgrpc.SimpleRequest{ResponseSize: 10}
	run := func(c testgrpc.TestServiceClient, n int) time.Duration {
		const workers = 32
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					if _, err := c.UnaryCall(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	run(direct, 100)
	run(relayed, 100)
	n := max(b.N, 1000)
	b.ResetTimer()
	dt := run(direct, n)
	rt := run(relayed, n)
	b.StopTimer()
	b.ReportMetric(float64(n)/dt.Seconds(), "direct-calls/s")
	b.ReportMetric(float64(n)/rt.Seconds(), "hangup-calls/s")
	b.ReportMetric(dt.Seconds()/rt.Seconds(), "ratio")
}

// streamRounds is how many rounds a streaming benchmark splits its
// messages into: each round runs every path once, so that the paths share
// the machine's noise rather than each having a quiet or a busy spell.
const streamRounds = 8

// BenchmarkStreaming1MiB streams 1 MiB messages from the app, direct,
// through the splice relay and through hangup in turn, and reports each
// path's MiB/s, hangup's ratio to direct and, issue 15's target (≥ 1.0),
// to the splice relay.
func BenchmarkStreaming1MiB(b *testing.B) {
	p := setup(b)
	run := func(c testgrpc.TestServiceClient, n int) time.Duration {
		params := make([]*testgrpc.ResponseParameters, n)
		for i := range params {
			params[i] = &testgrpc.ResponseParameters{Size: 1 << 20}
		}
		start := time.Now()
		s, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := s.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	reportStreaming(b, p, 64, "MiB/s", run)
}

// BenchmarkStreamingSmall streams 10-byte messages on one FullDuplexCall,
// 64 requests in flight and each answer sending the next (bench/compare's
// small-message scenario), on each path in turn; it reports msg/s and
// hangup's ratios.
func BenchmarkStreamingSmall(b *testing.B) {
	p := setup(b)
	const window = 64
	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}}
	run := func(c testgrpc.TestServiceClient, n int) time.Duration {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		credit := make(chan struct{}, window)
		for range min(window, n) {
			credit <- struct{}{}
		}
		sent := make(chan error, 1)
		go func() {
			for range n {
				select {
				case <-credit:
				case <-ctx.Done(): // the receiver failed
					sent <- ctx.Err()
					return
				}
				if err := s.Send(req); err != nil {
					sent <- err
					return
				}
			}
			sent <- s.CloseSend()
		}()
		for range n {
			if _, err := s.Recv(); err != nil {
				b.Fatal(err)
			}
			select {
			case credit <- struct{}{}:
			default: // the sender has sent its n
			}
		}
		d := time.Since(start)
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
		return d
	}
	reportStreaming(b, p, 20000, "msg/s", run)
}

// reportStreaming runs at least minN units (messages) of run on each path,
// in streamRounds interleaved rounds, and reports the rates in unit and
// hangup's ratios to direct and to the splice relay.
func reportStreaming(b *testing.B, p paths, minN int, unit string, run func(testgrpc.TestServiceClient, int) time.Duration) {
	b.Helper()
	for _, c := range []testgrpc.TestServiceClient{p.direct, p.splice, p.hangup} {
		run(c, max(minN/streamRounds/4, 1)) // warm up: connections, windows, pools
	}
	n := max(b.N, minN)
	per := max(n/streamRounds, 1)
	var dt, st, ht time.Duration
	b.ResetTimer()
	for range streamRounds {
		dt += run(p.direct, per)
		st += run(p.splice, per)
		ht += run(p.hangup, per)
	}
	b.StopTimer()
	total := float64(per * streamRounds)
	b.ReportMetric(total/dt.Seconds(), "direct-"+unit)
	b.ReportMetric(total/st.Seconds(), "splice-"+unit)
	b.ReportMetric(total/ht.Seconds(), "hangup-"+unit)
	b.ReportMetric(dt.Seconds()/ht.Seconds(), "ratio")
	b.ReportMetric(st.Seconds()/ht.Seconds(), "ratio-splice")
}
