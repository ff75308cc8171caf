package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
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
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/pkg/event"
)

// captureClient is an otlptrace.Client that keeps what it would upload:
// each request marshalled as the SDK's clients marshal it and read back as
// a collector reads it. A request the collector could not read fails the
// upload, as the collector refuses the whole batch.
type captureClient struct {
	uploads int // UploadTraces calls
	got     []*tracepb.ResourceSpans
}

func (*captureClient) Start(context.Context) error { return nil }
func (*captureClient) Stop(context.Context) error  { return nil }
func (c *captureClient) UploadTraces(_ context.Context, rss []*tracepb.ResourceSpans) error {
	c.uploads++
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		return fmt.Errorf("marshal the request: %w", err)
	}
	var back coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &back); err != nil {
		return fmt.Errorf("the collector cannot read the request: %w", err)
	}
	c.got = append(c.got, back.ResourceSpans...)
	return nil
}

// sortScopes orders each ResourceSpans' scopes by name, since the SDK's
// exporter groups them through a map.
// sameAsSDK exports ours with otlpExporter and sdk with the SDK's own
// exporter, fails unless the ResourceSpans sent are equal (scopes in name
// order), and returns ours.
func sameAsSDK(t *testing.T, sdk, ours []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	t.Helper()
	want := &captureClient{}
	if err := otlptrace.NewUnstarted(want).ExportSpans(context.Background(), sdk); err != nil {
		t.Fatalf("SDK exporter: %v", err)
	}
	got := &captureClient{}
	if err := (&otlpExporter{client: got}).ExportSpans(context.Background(), ours); err != nil {
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
	return got.got
}

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
	tr := testTracer(rec, res, nil)
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

	got := sameAsSDK(t, spans, spans)
	if n := len(got); n != 1 || len(got[0].ScopeSpans) != 2 {
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

// seqIDs gives trace and span ids in sequence, so that spans recorded twice
// the same way get the same ids.
type seqIDs struct {
	mu sync.Mutex
	n  uint64
}

func (g *seqIDs) next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return g.n
}

func (g *seqIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	tid[0], tid[15] = 1, byte(g.next())
	return tid, g.NewSpanID(ctx, tid)
}

func (g *seqIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	sid[0], sid[7] = 1, byte(g.next())
	return sid
}

// TestOTLPEncodingRepairsInvalidUTF8: a string that is not valid UTF-8 (a
// client's :path, :authority and GOAWAY debug data can hold any bytes) is
// sent with each invalid sequence replaced by U+FFFD, which is what the
// SDK's exporter sends for the repaired strings. Protobuf strings must be
// UTF-8: a collector refuses a whole request holding one that is not (and
// the SDK's exporter, given the raw strings, fails to marshal the batch).
func TestOTLPEncodingRepairsInvalidUTF8(t *testing.T) {
	const bad = "a\xffb\xe2\x82" // an invalid byte, then a truncated sequence
	repaired := strings.ToValidUTF8(bad, "\uFFFD")
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// record makes spans with str in client-controlled strings.
		// tr is hangup's, tp the SDK's, both recording to the same
		// processor, resource and ids.
		record func(tr *Tracer, tp *sdktrace.TracerProvider, str string)
	}{
		{name: "hangup's stream span: :path, :authority, GOAWAY debug data", record: func(tr *Tracer, _ *sdktrace.TracerProvider, str string) {
			conn := tr.StartConn(ConnStart{ID: "c1", Peer: "10.0.0.1:5000", Start: t0})
			st := conn.StartStream(StreamStart{Method: "/" + str + ".Svc/" + str, Authority: str + ":50051", StreamID: 1, Start: t0})
			st.GoAway(t0, 0, 1, str, event.InitiatorClient)
			st.End(StreamEnd{At: t0.Add(time.Millisecond)})
			conn.GoAway(t0, 2, 1, str, event.InitiatorClient)
			conn.End(t0.Add(time.Second), event.ReasonGoAway, event.InitiatorClient)
		}},
		{name: "every string field", record: func(_ *Tracer, tp *sdktrace.TracerProvider, str string) {
			tr := tp.Tracer(str, trace.WithInstrumentationVersion(str), trace.WithSchemaURL(str),
				trace.WithInstrumentationAttributes(attribute.String(str, str)))
			_, s := tr.Start(context.Background(), str, trace.WithTimestamp(t0),
				trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}}), Attributes: []attribute.KeyValue{attribute.String("l", str)}}),
				trace.WithAttributes(
					attribute.String(str, str), attribute.StringSlice("ss", []string{"ok", str}),
					attribute.Slice("sl", attribute.StringValue(str)),
					attribute.Map("m", attribute.String(str, str)),
				))
			s.AddEvent(str, trace.WithTimestamp(t0), trace.WithAttributes(attribute.String("e", str)))
			s.SetStatus(codes.Error, str)
			s.End(trace.WithTimestamp(t0.Add(time.Second)))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spans := func(str string) []sdktrace.ReadOnlySpan {
				t.Helper()
				rec := tracetest.NewSpanRecorder()
				ids := &seqIDs{}
				res := resource.NewWithAttributes(str, attribute.String("service.name", str))
				tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(ids), sdktrace.WithResource(res))
				defer func() { _ = tp.Shutdown(context.Background()) }()
				tr := testTracer(rec, res, ids)
				tc.record(tr, tp, str)
				tr.stop()
				return rec.Ended()
			}
			sameAsSDK(t, spans(repaired), spans(bad))
		})
	}
}

// TestOTLPEncodingTooLong: a batch that encodes to more bytes than a
// request may carry is not sent: the export returns an error, and the batch
// span processor's spans are counted as dropped (where export).
func TestOTLPEncodingTooLong(t *testing.T) {
	if n := protowire.SizeVarint(maxRequestEncodedSize); n > maxLenVarint {
		t.Fatalf("the limit's length takes %d bytes, more than the %d reserved", n, maxLenVarint)
	}
	client := &captureClient{}
	exp := &otlpExporter{client: client, maxBytes: 256}
	drops := newDropCounter(nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(newCountedProcessor(exp, 16, drops)))
	tr := tp.Tracer(instrumentationName)
	for _, attr := range []string{"short", strings.Repeat("x", 300)} {
		_, s := tr.Start(context.Background(), "span", trace.WithAttributes(attribute.String("a", attr)))
		s.End()
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if client.uploads != 0 {
		t.Errorf("%d uploads, want none", client.uploads)
	}
	if got, want := drops.load(), (Drops{Export: 2}); got != want {
		t.Errorf("dropped %+v, want %+v", got, want)
	}

	// The error names the limit, and the next batch, within it, is sent.
	long := tracetest.SpanStub{Name: "long", Attributes: []attribute.KeyValue{attribute.String("a", strings.Repeat("x", 300))}}
	if err := exp.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{long.Snapshot()}); !errors.Is(err, errRequestTooLong) {
		t.Errorf("ExportSpans of a span over the limit: %v, want %v", err, errRequestTooLong)
	}
	short := tracetest.SpanStub{Name: "short"}
	if err := exp.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{short.Snapshot()}); err != nil {
		t.Errorf("ExportSpans after a failed one: %v", err)
	}
	if client.uploads != 1 || len(client.got) != 1 {
		t.Errorf("%d uploads of %d ResourceSpans, want the short span's", client.uploads, len(client.got))
	}
}

// TestOTLPEmptyBatchNotSent: a batch with no span uploads nothing.
func TestOTLPEmptyBatchNotSent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spans []sdktrace.ReadOnlySpan
	}{
		{name: "none"},
		{name: "nil spans only", spans: []sdktrace.ReadOnlySpan{nil, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &captureClient{}
			if err := (&otlpExporter{client: client}).ExportSpans(context.Background(), tc.spans); err != nil {
				t.Fatalf("ExportSpans: %v", err)
			}
			if client.uploads != 0 {
				t.Errorf("%d uploads, want none", client.uploads)
			}
		})
	}
}

// TestIsASCII: every length up to three words, with no byte over 0x7f and
// with one at each position.
func TestIsASCII(t *testing.T) {
	for n := range 25 {
		s := []byte(strings.Repeat("a", n))
		if !isASCII(string(s)) {
			t.Errorf("isASCII(%q) = false", s)
		}
		for i := range n {
			s[i] = 0x80
			if isASCII(string(s)) {
				t.Errorf("isASCII(%q) = true", s)
			}
			s[i] = 'a'
		}
	}
}
