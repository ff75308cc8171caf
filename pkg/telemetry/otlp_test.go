package telemetry

import (
	"context"
	"sort"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/pkg/event"
)

// captureClient is an otlptrace.Client that keeps what it would upload,
// marshalled and read back as the receiver would.
type captureClient struct{ got []*tracepb.ResourceSpans }

func (*captureClient) Start(context.Context) error { return nil }
func (*captureClient) Stop(context.Context) error  { return nil }
func (c *captureClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	for _, rs := range rss {
		b, err := proto.Marshal(rs)
		if err != nil {
			return err
		}
		var back tracepb.ResourceSpans
		if err := proto.Unmarshal(b, &back); err != nil {
			return err
		}
		c.got = append(c.got, &back)
	}
	return nil
}

// sortScopes orders each ResourceSpans' scopes by name, since the SDK's
// exporter groups them through a map.
func sortScopes(rss []*tracepb.ResourceSpans) {
	for _, rs := range rss {
		sort.Slice(rs.ScopeSpans, func(i, j int) bool {
			return rs.ScopeSpans[i].GetScope().GetName() < rs.ScopeSpans[j].GetScope().GetName()
		})
	}
}

// TestOTLPEncodingMatchesSDK: the spans otlpExporter encodes read back as
// exactly what the SDK's otlptrace exporter sends for them: hangup's own
// spans (stream with events, status and link; connection; notify) and a
// span with every kind of attribute value, from two scopes.
func TestOTLPEncodingMatchesSDK(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "hangup"), attribute.Int("pid", 7))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	tr := newTracer(tp.Tracer(instrumentationName), 64, newDropCounter(nil))
	conn := tr.StartConn(ConnStart{ID: "c1", Peer: "10.0.0.1:5000", Start: t0})
	conn.RTT(event.RTT{Last: time.Millisecond, Min: time.Millisecond, Smoothed: time.Millisecond, Samples: 2})
	st := conn.StartStream(StreamStart{Traceparent: clientTraceparent, Tracestate: "k=v", Method: "/echo.v1.Echo/Say",
		Authority: "echo:50051", StreamID: 3, Start: t0.Add(time.Millisecond)})
	st.RSTStream(t0.Add(2*time.Millisecond), 8, event.InitiatorClient)
	st.GoAway(t0.Add(2*time.Millisecond), 0, 3, "bye", event.InitiatorClient)
	st.End(StreamEnd{At: t0.Add(3 * time.Millisecond), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
	ok := conn.StartStream(StreamStart{Method: "/echo.v1.Echo/Unary", StreamID: 5, Start: t0})
	ok.End(StreamEnd{At: t0.Add(time.Millisecond), HasGRPCStatus: true})
	tr.Notified(event.Event{ID: "e1", TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: true}, 2, time.Millisecond)
	conn.End(t0.Add(time.Second), event.ReasonUnspecified, event.InitiatorUnspecified)
	tr.stop()

	other := tp.Tracer("other", trace.WithInstrumentationVersion("v1"), trace.WithSchemaURL("https://example.com/s"),
		trace.WithInstrumentationAttributes(attribute.Bool("lib", true)))
	_, s := other.Start(context.Background(), "every-value", trace.WithTimestamp(t0), trace.WithAttributes(
		attribute.Bool("b", false), attribute.Int64("i", -3), attribute.Float64("f", 0), attribute.String("s", ""),
		attribute.ByteSlice("bytes", []byte{0, 1}), attribute.BoolSlice("bs", []bool{true, false}),
		attribute.Int64Slice("is", []int64{1, -1}), attribute.Float64Slice("fs", []float64{1.5}),
		attribute.StringSlice("ss", []string{"a", ""}), attribute.Slice("sl", attribute.IntValue(1), attribute.StringValue("x")),
		attribute.Map("m", attribute.String("k", "v"), attribute.Int("n", 2)),
	))
	s.SetStatus(codes.Error, "broken")
	s.End(trace.WithTimestamp(t0.Add(time.Second)))
	spans := rec.Ended()
	if len(spans) != 5 {
		t.Fatalf("recorded %d spans, want 5", len(spans))
	}

	want := &captureClient{}
	sdkExp := otlptrace.NewUnstarted(want)
	if err := sdkExp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatalf("SDK exporter: %v", err)
	}
	got := &captureClient{}
	if err := (&otlpExporter{client: got}).ExportSpans(context.Background(), spans); err != nil {
		t.Fatalf("otlpExporter: %v", err)
	}
	sortScopes(want.got)
	sortScopes(got.got)
	if len(got.got) != len(want.got) {
		t.Fatalf("%d ResourceSpans, the SDK exporter sent %d", len(got.got), len(want.got))
	}
	for i := range want.got {
		if !proto.Equal(want.got[i], got.got[i]) {
			t.Errorf("ResourceSpans %d differs from the SDK exporter's:\nSDK:\n%s\nhangup:\n%s", i,
				prototext.Format(want.got[i]), prototext.Format(got.got[i]))
		}
	}
	if n := len(got.got); n != 1 || len(got.got[0].ScopeSpans) != 2 {
		t.Errorf("got %d resources, want 1 with 2 scopes", n)
	}
}

// TestOTLPGroupsResources: spans of two resources become two ResourceSpans.
func TestOTLPGroupsResources(t *testing.T) {
	var spans []sdktrace.ReadOnlySpan
	for _, name := range []string{"a", "b", "a"} {
		stub := tracetest.SpanStub{Name: name, Resource: resource.NewSchemaless(attribute.String("service.name", name)),
			InstrumentationScope: instrumentation.Scope{Name: "s"}}
		spans = append(spans, stub.Snapshot())
	}
	got := &captureClient{}
	if err := (&otlpExporter{client: got}).ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	if len(got.got) != 2 || len(got.got[0].ScopeSpans[0].Spans) != 2 || len(got.got[1].ScopeSpans[0].Spans) != 1 {
		t.Errorf("got %v, want resource a with 2 spans, then b with 1", got.got)
	}
}
