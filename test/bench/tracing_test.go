package bench

import (
	"context"
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/pkg/proxy"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// discard is a span exporter that drops everything: the cost measured is
// the relay's and the SDK's, not a collector's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracingOverhead runs the same unary calls through a relay with
// tracing off and one with every stream traced (always-on sampling), in
// one run, and reports latency and throughput for both and their ratio.
func BenchmarkTracingOverhead(b *testing.B) {
	app := demoapp.New(0)
	app.Ended = nil
	gs := grpc.NewServer()
	app.Register(gs)
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = gs.Serve(appLn) }()
	b.Cleanup(gs.Stop)
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{SpanExporter: discard{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	relay := func(t *telemetry.Telemetry) testgrpc.TestServiceClient {
		srv, err := proxy.New(proxy.Config{Upstream: proxy.Address{Network: "tcp", Address: appLn.Addr().String()}, Telemetry: t})
		if err != nil {
			b.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go func() { _ = srv.Serve(ln) }()
		b.Cleanup(func() { _ = srv.Close() })
		cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cc.Close() })
		return testgrpc.NewTestServiceClient(cc)
	}
	off, on := relay(nil), relay(tel)
	ctx := context.Background()
	req := &testgrpc.SimpleRequest{ResponseSize: 10}
	var offLat, onLat []time.Duration
	var offTotal, onTotal time.Duration
	call := func(c testgrpc.TestServiceClient, lat *[]time.Duration, total *time.Duration) {
		start := time.Now()
		if _, err := c.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		*lat = append(*lat, d)
		*total += d
	}
	b.ResetTimer()
	for range b.N {
		call(off, &offLat, &offTotal)
		call(on, &onLat, &onTotal)
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(offLat, 0.5).Microseconds()), "off-p50-µs")
	b.ReportMetric(float64(percentile(onLat, 0.5).Microseconds()), "on-p50-µs")
	b.ReportMetric(float64(percentile(offLat, 0.99).Microseconds()), "off-p99-µs")
	b.ReportMetric(float64(percentile(onLat, 0.99).Microseconds()), "on-p99-µs")
	b.ReportMetric(offTotal.Seconds()/onTotal.Seconds(), "throughput-ratio")
	b.ReportMetric(float64(tel.Tracer().Dropped()), "spans-dropped")
}
