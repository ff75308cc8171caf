package telemetry

import (
	"context"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

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

// marshalClient is an otlptrace.Client that marshals each request as the
// gRPC and HTTP clients do, and drops it.
type marshalClient struct{ bytes int }

func (*marshalClient) Start(context.Context) error { return nil }
func (*marshalClient) Stop(context.Context) error  { return nil }
func (c *marshalClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	c.bytes = len(b)
	return err
}

// BenchmarkExportBatch measures the exporter's work for one batch of 512
// stream spans as hangup ends them (8 attributes, a link, a status), up to
// the marshalled request: the SDK's otlptrace exporter (its tracetransform
// structs, then proto.Marshal) against hangup's otlpExporter (the spans
// encoded straight into bytes), alternating in one loop. It reports each
// one's ns/span and allocs/span and hangup's CPU time as a ratio of the
// SDK's.
func BenchmarkExportBatch(b *testing.B) {
	rec := tracetest.NewSpanRecorder()
	tr := testTracer(rec, resource.Empty(), nil)
	conn := tr.StartConn(ConnStart{ID: "c1", Peer: "10.1.2.3:40000"})
	now := time.Now()
	for i := range 512 {
		s := conn.StartStream(StreamStart{Method: "/grpc.testing.TestService/UnaryCall", Authority: "app:50051", StreamID: uint32(2*i + 1), Start: now})
		s.End(StreamEnd{At: now, HasGRPCStatus: true})
	}
	tr.stop()
	spans := rec.Ended()
	ctx := context.Background()
	sdkOut, oursOut := &marshalClient{}, &marshalClient{}
	sdk, ours := otlptrace.NewUnstarted(sdkOut), &otlpExporter{client: oursOut}
	export := func(exp sdktrace.SpanExporter) func() {
		return func() {
			if err := exp.ExportSpans(ctx, spans); err != nil {
				b.Fatal(err)
			}
		}
	}
	versusSDK(b, len(spans), export(sdk), export(ours))
	if sdkOut.bytes != oursOut.bytes {
		b.Fatalf("requests of %d and %d bytes: the encodings differ", sdkOut.bytes, oursOut.bytes)
	}
}

// versusSDK runs sdk and hangup in turn in b's loop, each handling spans
// spans per call, and reports each one's ns/span and allocs/span and
// hangup's time as a ratio of the SDK's.
func versusSDK(b *testing.B, spans int, sdk, hangup func()) {
	b.Helper()
	measure := func(f func()) (time.Duration, uint64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		f()
		d := time.Since(start)
		runtime.ReadMemStats(&m1)
		return d, m1.Mallocs - m0.Mallocs
	}
	var sdkT, oursT time.Duration
	var sdkA, oursA uint64
	for b.Loop() {
		d, a := measure(sdk)
		sdkT, sdkA = sdkT+d, sdkA+a
		d, a = measure(hangup)
		oursT, oursA = oursT+d, oursA+a
	}
	n := float64(b.N) * float64(spans)
	b.ReportMetric(float64(sdkT.Nanoseconds())/n, "sdk-ns/span")
	b.ReportMetric(float64(oursT.Nanoseconds())/n, "hangup-ns/span")
	b.ReportMetric(float64(sdkA)/n, "sdk-allocs/span")
	b.ReportMetric(float64(oursA)/n, "hangup-allocs/span")
	b.ReportMetric(oursT.Seconds()/sdkT.Seconds(), "hangup/sdk")
}

// BenchmarkDropWithinWarnInterval measures a drop and the warn call after
// it while the last warning is less than dropWarnEvery old, on every P at
// once: what a collector outage adds to each span it loses.
func BenchmarkDropWithinWarnInterval(b *testing.B) {
	c := newDropCounter(nil)
	c.export.Add(1)
	c.warn() // the warning that starts the interval
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.export.Add(1)
			c.warn()
		}
	})
}

// countingProcessor is a span processor that counts the spans it is handed
// and keeps none: the cost measured is the spans'.
type countingProcessor struct{ ended int }

func (*countingProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *countingProcessor) OnEnd(sdktrace.ReadOnlySpan)                   { p.ended++ }
func (*countingProcessor) Shutdown(context.Context) error                  { return nil }
func (*countingProcessor) ForceFlush(context.Context) error                { return nil }

// BenchmarkSpanRecorder measures one stream span's life as the Tracer's
// goroutine and the relay's live it, on one goroutine: the parent from a
// client's traceparent, start with the connection's link, an RST_STREAM
// event, the end's attributes and status, end. hangup's recorder against
// the SDK's spans doing the same (what Tracer did before the recorder),
// alternating in blocks in one loop; it reports each one's ns/span and
// allocs/span and hangup's time as a ratio of the SDK's.
func BenchmarkSpanRecorder(b *testing.B) {
	const block = 64
	ours, theirs := &countingProcessor{}, &countingProcessor{}
	r := newRecorder(resource.Empty(), sdktrace.ParentBased(sdktrace.AlwaysSample()), ours)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(theirs))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	sdk := tp.Tracer(instrumentationName)

	var tc propagation.TraceContext
	carrier := &headerCarrier{traceparent: clientTraceparent}
	link := []sdktrace.Link{{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})}}
	linkOpt := trace.WithLinks(trace.Link{SpanContext: link[0].SpanContext})
	st := &Stream{c: &Conn{peer: peerAttrs("192.0.2.1:40000")}, id: 1, service: "echo.v1.Echo", method: "Say", authority: "echo:50051"}
	rst := func() []attribute.KeyValue {
		return []attribute.KeyValue{AttrErrorCode.Int64(8), AttrErrorName.String("CANCEL"), AttrInitiator.String("CLIENT")}
	}
	end := func(attrs []attribute.KeyValue) []attribute.KeyValue {
		attrs = st.appendAttrs(attrs)
		return append(attrs, AttrDisconnectReason.String("RST_STREAM"), AttrDisconnectInitiator.String("CLIENT"))
	}
	now := time.Now()
	hangupSpans := func() {
		for range block {
			ctx := tc.Extract(context.Background(), carrier)
			d, _ := r.start(ctx, "echo.v1.Echo/Say", trace.SpanKindServer, now, link)
			if d == nil {
				b.Fatal("not sampled")
			}
			d.addEvent(sdktrace.Event{Name: EventRSTStream, Time: now, Attributes: rst()})
			d.attrs = end(d.attrs)
			d.status = sdktrace.Status{Code: codes.Error, Description: "RST_STREAM"}
			d.finish(now)
		}
	}
	var buf []attribute.KeyValue
	sdkSpans := func() {
		for range block {
			ctx := tc.Extract(context.Background(), carrier)
			_, s := sdk.Start(ctx, "echo.v1.Echo/Say", serverKindOpt, trace.WithTimestamp(now), linkOpt)
			s.AddEvent(EventRSTStream, trace.WithTimestamp(now), trace.WithAttributes(rst()...))
			buf = end(buf[:0])
			s.SetStatus(codes.Error, "RST_STREAM")
			s.SetAttributes(buf...)
			s.End(trace.WithTimestamp(now))
		}
	}
	versusSDK(b, block, sdkSpans, hangupSpans)
	if ours.ended != theirs.ended {
		b.Fatalf("%d spans ended by hangup, %d by the SDK", ours.ended, theirs.ended)
	}
}

// serverKindOpt is the SDK span kind option, built once as Tracer did.
var serverKindOpt = trace.WithSpanKind(trace.SpanKindServer)
