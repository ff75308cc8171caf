package telemetry

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/hangup-dev/hangup/pkg/event"
)

// TestSamplerFromEnvValues: OTEL_TRACES_SAMPLER and its argument pick the
// sampler the SDK would; what the SDK would only log is an error naming the
// variable, the value and what is accepted.
func TestSamplerFromEnvValues(t *testing.T) {
	tests := []struct {
		name, sampler, arg string
		want               sdktrace.Sampler // nil: an error
		wantErr            string
	}{
		{name: "unset", want: sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{name: "always_on", sampler: "always_on", want: sdktrace.AlwaysSample()},
		{name: "case and spaces ignored", sampler: " Always_Off ", want: sdktrace.NeverSample()},
		{name: "parentbased_always_on", sampler: "parentbased_always_on", want: sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{name: "parentbased_always_off", sampler: "parentbased_always_off", want: sdktrace.ParentBased(sdktrace.NeverSample())},
		{name: "traceidratio", sampler: "traceidratio", arg: "0.25", want: sdktrace.TraceIDRatioBased(0.25)},
		{name: "traceidratio without a ratio samples all", sampler: "traceidratio", want: sdktrace.TraceIDRatioBased(1)},
		{name: "parentbased_traceidratio", sampler: "parentbased_traceidratio", arg: "0", want: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))},
		{name: "unknown sampler", sampler: "jaeger_remote", wantErr: `OTEL_TRACES_SAMPLER="jaeger_remote": want one of always_on,`},
		{name: "ratio not a number", sampler: "traceidratio", arg: "ten percent", wantErr: `OTEL_TRACES_SAMPLER_ARG="ten percent" for traceidratio: want a ratio from 0 to 1`},
		{name: "ratio below 0", sampler: "parentbased_traceidratio", arg: "-0.1", wantErr: `OTEL_TRACES_SAMPLER_ARG="-0.1"`},
		{name: "ratio over 1", sampler: "traceidratio", arg: "1.5", wantErr: `OTEL_TRACES_SAMPLER_ARG="1.5"`},
		{name: "ratio NaN", sampler: "traceidratio", arg: "NaN", wantErr: `OTEL_TRACES_SAMPLER_ARG="NaN"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
			got, err := samplerFromEnv()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("samplerFromEnv() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("samplerFromEnv(): %v", err)
			}
			if got.Description() != tc.want.Description() {
				t.Errorf("sampler %s, want %s", got.Description(), tc.want.Description())
			}
		})
	}
}

// TestSpanChangesAfterEnd: once a span has ended it belongs to the
// exporter: a later event or end leaves it as it was, as the SDK's spans
// ignore them.
func TestSpanChangesAfterEnd(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := testTracer(rec, resource.Empty(), nil)
	conn := tr.StartConn(ConnStart{Peer: "192.0.2.1:1234"})
	st := conn.StartStream(StreamStart{Method: "/a.B/C", StreamID: 1})
	st.End(StreamEnd{At: time.Now(), HasGRPCStatus: true})
	st.RSTStream(time.Now(), 8, event.InitiatorClient)
	st.End(StreamEnd{At: time.Now(), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
	conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
	conn.GoAway(time.Now(), 0, 1, "late", event.InitiatorClient)
	tr.stop()

	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want the stream's and the connection's once each", len(ended))
	}
	for _, s := range ended {
		if n := len(s.Events()); n != 0 {
			t.Errorf("%s has %d events, want none: they came after its end", s.Name(), n)
		}
		if s.Status().Description != "" {
			t.Errorf("%s status %+v, want the first end's (OK)", s.Name(), s.Status())
		}
	}
}

// TestSpanEventsCapped: a client that sends GOAWAY after GOAWAY cannot grow
// its connection span without end: the first maxSpanEvents events are kept
// and the rest counted as dropped, which the export carries.
func TestSpanEventsCapped(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := testTracer(rec, resource.Empty(), nil)
	conn := tr.StartConn(ConnStart{Peer: "192.0.2.1:1234"})
	const sent = maxSpanEvents + 72
	for i := range sent {
		conn.GoAway(time.Now(), 0, uint32(i), "", event.InitiatorClient)
	}
	conn.End(time.Now(), event.ReasonGoAway, event.InitiatorClient)
	tr.stop()

	cs := spansByName(rec.Ended())[ConnectionSpanName]
	if cs == nil {
		t.Fatalf("no %s span", ConnectionSpanName)
	}
	if got := len(cs.Events()); got != maxSpanEvents {
		t.Errorf("%d events, want %d", got, maxSpanEvents)
	}
	if got := cs.DroppedEvents(); got != sent-maxSpanEvents {
		t.Errorf("DroppedEvents() = %d, want %d", got, sent-maxSpanEvents)
	}
	if first := attrMap(cs.Events()[0].Attributes)[AttrLastStreamID]; first.AsInt64() != 0 {
		t.Errorf("first event's last-stream-id %d, want the first GOAWAY's (0)", first.AsInt64())
	}
}

// TestUnsampledStreamHoldsNoRecord: a stream the sampler drops keeps its
// ids and nothing else. With tracing on and a ratio sampler most streams
// are unsampled, and each is held for as long as the stream is open: a
// record of about 1 KB apiece in it (as before this test) would cost
// 10,000 open streams 10 MB.
func TestUnsampledStreamHoldsNoRecord(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := testTracer(rec, resource.Empty(), nil)
	defer tr.stop()
	conn := tr.StartConn(ConnStart{Peer: "192.0.2.1:1234"})
	const unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	const n = 1000
	streams := make([]*Stream, 0, n)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := range n {
		streams = append(streams, conn.StartStream(StreamStart{Traceparent: unsampledParent, Method: "/a.B/C", StreamID: uint32(2*i + 1)}))
	}
	runtime.ReadMemStats(&m1)
	if streams[0].Sampled() || streams[0].TraceID() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("stream sampled %v in trace %s, want the client's unsampled trace", streams[0].Sampled(), streams[0].TraceID())
	}
	// The traceparent's parse and the sampler's context take about 200 bytes;
	// the Stream itself under 200.
	per := (m1.TotalAlloc - m0.TotalAlloc) / n
	t.Logf("%d bytes per unsampled stream", per)
	if per > 512 {
		t.Errorf("an unsampled stream allocates %d bytes, want under 512", per)
	}
	runtime.KeepAlive(streams)
}

// TestSpanDataDefinesEveryMethod: spanData embeds a nil ReadOnlySpan for
// the interface's unexported method, so a method a newer SDK adds to the
// interface would compile and then panic in the exporter that calls it.
// Every exported method must be spanData's own.
func TestSpanDataDefinesEveryMethod(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := testTracer(rec, resource.Empty(), nil)
	conn := tr.StartConn(ConnStart{Peer: "127.0.0.1:1"})
	st := conn.StartStream(StreamStart{Method: "/a.B/C", StreamID: 1})
	st.End(StreamEnd{At: time.Now()})
	conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
	tr.stop()
	spans := rec.Ended()
	if len(spans) == 0 {
		t.Fatal("no span recorded")
	}
	span := reflect.ValueOf(spans[0])
	if _, ok := spans[0].(*spanData); !ok {
		t.Fatalf("recorded a %T, want *spanData", spans[0])
	}
	iface := reflect.TypeFor[sdktrace.ReadOnlySpan]()
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if !m.IsExported() {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("(*spanData).%s panics (%v): define it on spanData, the embedded ReadOnlySpan is nil", m.Name, r)
				}
			}()
			fn := span.MethodByName(m.Name)
			args := make([]reflect.Value, fn.Type().NumIn())
			for k := range args {
				args[k] = reflect.Zero(fn.Type().In(k))
			}
			fn.Call(args)
		})
	}
}
