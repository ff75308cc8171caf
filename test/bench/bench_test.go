// Package bench measures the relay against direct calls in the same run:
// `make bench` prints each figure and its ratio to direct.
package bench

import (
	"context"
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

// setup starts the app and the relay and returns a client for each path.
func setup(b *testing.B) (direct, relayed testgrpc.TestServiceClient) {
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

	dial := func(addr string) testgrpc.TestServiceClient {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.MaxCallSendMsgSize(4<<20)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cc.Close() })
		return testgrpc.NewTestServiceClient(cc)
	}
	return dial(appLn.Addr().String()), dial(ln.Addr().String())
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkUnaryLatency alternates direct and relayed calls, one at a time,
// and reports the latency the relay adds.
func BenchmarkUnaryLatency(b *testing.B) {
	direct, relayed := setup(b)
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
	direct, relayed := setup(b)
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

// BenchmarkStreaming1MiB streams 1 MiB messages from the app and reports
// bytes/s direct, through the relay, and the ratio.
func BenchmarkStreaming1MiB(b *testing.B) {
	direct, relayed := setup(b)
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
	run(direct, 4)
	run(relayed, 4)
	n := max(b.N, 64)
	b.ResetTimer()
	dt := run(direct, n)
	rt := run(relayed, n)
	b.StopTimer()
	mb := float64(n)
	b.ReportMetric(mb/dt.Seconds(), "direct-MiB/s")
	b.ReportMetric(mb/rt.Seconds(), "hangup-MiB/s")
	b.ReportMetric(dt.Seconds()/rt.Seconds(), "ratio")
}
