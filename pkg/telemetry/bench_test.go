package telemetry

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/hangup-dev/hangup/pkg/event"
)

// BenchmarkMetrics measures the calls the relay makes per stream or
// disconnect; they must report 0 allocs/op.
func BenchmarkMetrics(b *testing.B) {
	tel, err := Setup(context.Background(), Options{SpanProcessor: tracetest.NewSpanRecorder()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	m := tel.Metrics()
	cases := []struct {
		name string
		call func()
	}{
		{"StreamOpened", m.StreamOpened},
		{"ConnOpened", m.ConnOpened},
		{"Disconnect", func() { m.Disconnect(event.ReasonRSTStream, event.InitiatorClient) }},
		{"DetectionLatency", func() { m.DetectionLatency(3 * time.Millisecond) }},
		{"KeepalivePing", m.KeepalivePing},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.call()
			}
		})
	}
}

func TestMetricsDoNotAllocate(t *testing.T) {
	tel, err := Setup(context.Background(), Options{SpanProcessor: tracetest.NewSpanRecorder()})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, tel)
	m := tel.Metrics()
	tests := []struct {
		name string
		call func()
	}{
		{"ConnOpened/Closed", func() { m.ConnOpened(); m.ConnClosed() }},
		{"StreamOpened/Closed", func() { m.StreamOpened(); m.StreamClosed() }},
		{"Disconnect", func() { m.Disconnect(event.ReasonGoAway, event.InitiatorClient) }},
		{"DetectionLatency", func() { m.DetectionLatency(time.Second) }},
		{"NotifyLatency", func() { m.NotifyLatency(time.Second) }},
		{"Keepalive", func() { m.KeepalivePing(); m.KeepaliveTimeout() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.call() // the first call creates the series
			if a := testing.AllocsPerRun(100, tc.call); a != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tc.name, a)
			}
		})
	}
}

// BenchmarkStream measures one stream's span work on the relay's goroutine:
// start, traceparent and ids for the forwarded request, one event, end.
func BenchmarkStream(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			var tel *Telemetry
			if on {
				var err error
				tel, err = Setup(context.Background(), Options{SpanProcessor: tracetest.NewSpanRecorder(), SpanQueue: 1 << 16})
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = tel.Shutdown(context.Background()) }()
			}
			tr := tel.Tracer()
			conn := tr.StartConn(ConnStart{Peer: "127.0.0.1:1234"})
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				s := conn.StartStream(StreamStart{Traceparent: clientTraceparent, Method: "/echo.v1.Echo/Stream", Authority: "echo:50051", Start: now})
				_ = s.Traceparent()
				_, _ = s.TraceID(), s.SpanID()
				s.RSTStream(now, 8, event.InitiatorClient)
				s.End(StreamEnd{At: now, Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
			}
			conn.End(now, event.ReasonUnspecified, event.InitiatorUnspecified)
		})
	}
}
