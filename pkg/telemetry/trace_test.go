package telemetry

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/hangup-dev/hangup/pkg/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recordingSetup returns a Telemetry whose ended spans land in the returned
// recorder once Shutdown has drained the span queue.
func recordingSetup(t *testing.T) (*Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := Setup(context.Background(), Options{SpanProcessor: rec})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, rec
}

// testTracer is a Tracer whose spans go to proc, with res as their
// resource and ids' ids (random when nil). Stop it with stop.
func testTracer(proc sdktrace.SpanProcessor, res *resource.Resource, ids sdktrace.IDGenerator) *Tracer {
	r := newRecorder(res, sdktrace.ParentBased(sdktrace.AlwaysSample()), proc)
	if ids != nil {
		r.ids = ids
	}
	return newTracer(r, 1024, newDropCounter(nil))
}

func shutdown(t *testing.T, tel *Telemetry) {
	t.Helper()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[attribute.Key]any) {
	t.Helper()
	m := attrMap(got)
	for k, w := range want {
		v, ok := m[k]
		if !ok {
			t.Errorf("%s: attribute %s missing; have %v", what, k, got)
			continue
		}
		if v.AsInterface() != w {
			t.Errorf("%s: attribute %s = %v (%T), want %v (%T)", what, k, v.AsInterface(), v.AsInterface(), w, w)
		}
	}
}

func spansByName(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := make(map[string]sdktrace.ReadOnlySpan, len(spans))
	for _, s := range spans {
		m[s.Name()] = s
	}
	return m
}

const clientTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestStreamSpanShape(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		traceparent string
		end         StreamEnd
		wantParent  string // hex span id of the parent; "" for a root
		wantStatus  codes.Code
		wantReason  string
	}{
		{
			name:        "client parent, disconnected by RST_STREAM",
			traceparent: clientTraceparent,
			end:         StreamEnd{At: t0.Add(3 * time.Second), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient},
			wantParent:  "00f067aa0ba902b7",
			wantStatus:  codes.Error,
			wantReason:  "RST_STREAM",
		},
		{
			name:       "no traceparent, ended normally with grpc-status",
			end:        StreamEnd{At: t0.Add(3 * time.Second), GRPCStatus: 5, HasGRPCStatus: true},
			wantStatus: codes.Ok,
		},
		{
			name:        "malformed traceparent starts a new trace",
			traceparent: "00-zz-yy-01",
			end:         StreamEnd{At: t0.Add(3 * time.Second)},
			wantStatus:  codes.Ok,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tel, rec := recordingSetup(t)
			if !tel.Tracing() {
				t.Fatal("Tracing() = false with a SpanProcessor")
			}
			tr := tel.Tracer()
			conn := tr.StartConn(ConnStart{ID: "c-1", Peer: "10.1.2.3:45678", Start: t0})
			st := conn.StartStream(StreamStart{
				Traceparent: tc.traceparent,
				Method:      "/echo.v1.Echo/Stream",
				Authority:   "echo.default.svc:50051",
				StreamID:    7,
				Start:       t0.Add(time.Second),
			})
			st.KeepaliveTimeout(t0.Add(1500 * time.Millisecond))
			st.GoAway(t0.Add(2*time.Second), 0, 7, "bye", event.InitiatorClient)
			st.RSTStream(t0.Add(2500*time.Millisecond), 8, event.InitiatorClient)
			st.End(tc.end)
			conn.End(t0.Add(4*time.Second), event.ReasonUnspecified, event.InitiatorUnspecified)
			shutdown(t, tel)

			spans := spansByName(rec.Ended())
			if len(spans) != 2 {
				t.Fatalf("got %d spans %v, want 2", len(rec.Ended()), spans)
			}
			cs, ss := spans[ConnectionSpanName], spans["echo.v1.Echo/Stream"]
			if cs == nil || ss == nil {
				t.Fatalf("want spans %q and %q, got %v", ConnectionSpanName, "echo.v1.Echo/Stream", spans)
			}

			if ss.SpanKind() != trace.SpanKindServer {
				t.Errorf("stream kind = %v, want server", ss.SpanKind())
			}
			if !ss.StartTime().Equal(t0.Add(time.Second)) || !ss.EndTime().Equal(tc.end.At) {
				t.Errorf("stream times = %v..%v, want %v..%v", ss.StartTime(), ss.EndTime(), t0.Add(time.Second), tc.end.At)
			}
			want := map[attribute.Key]any{
				"rpc.system":           "grpc",
				"rpc.service":          "echo.v1.Echo",
				"rpc.method":           "Stream",
				"server.address":       "echo.default.svc",
				"network.peer.address": "10.1.2.3",
				"network.peer.port":    int64(45678),
				AttrStreamID:           int64(7),
			}
			if tc.end.HasGRPCStatus {
				want["rpc.grpc.status_code"] = int64(tc.end.GRPCStatus)
			}
			if tc.wantReason != "" {
				want[AttrDisconnectReason] = tc.wantReason
				want[AttrDisconnectInitiator] = "CLIENT"
			}
			checkAttrs(t, "stream span", ss.Attributes(), want)
			if _, ok := attrMap(ss.Attributes())["rpc.grpc.status_code"]; ok != tc.end.HasGRPCStatus {
				t.Errorf("rpc.grpc.status_code present = %v, want %v", ok, tc.end.HasGRPCStatus)
			}
			if _, ok := attrMap(ss.Attributes())[AttrDisconnectReason]; ok != (tc.wantReason != "") {
				t.Errorf("%s present = %v, want %v", AttrDisconnectReason, ok, tc.wantReason != "")
			}
			if got := ss.Status(); got.Code != tc.wantStatus || (tc.wantReason != "" && got.Description != tc.wantReason) {
				t.Errorf("status = %+v, want %v %q", got, tc.wantStatus, tc.wantReason)
			}

			// Parent: the client's span, or none.
			if tc.wantParent == "" {
				if ss.Parent().IsValid() {
					t.Errorf("parent = %v, want none", ss.Parent())
				}
				if ss.SpanContext().TraceID() == cs.SpanContext().TraceID() {
					t.Error("stream span shares its connection span's trace; want its own")
				}
			} else {
				if got := ss.Parent().SpanID().String(); got != tc.wantParent || !ss.Parent().IsRemote() {
					t.Errorf("parent span = %s (remote %v), want remote %s", got, ss.Parent().IsRemote(), tc.wantParent)
				}
				if got := ss.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
					t.Errorf("trace id = %s, want the client's", got)
				}
			}

			// Link to the connection span.
			if l := ss.Links(); len(l) != 1 || !l[0].SpanContext.Equal(cs.SpanContext()) {
				t.Errorf("links = %+v, want one to the connection span %v", l, cs.SpanContext())
			}

			// Events, in order, with their timestamps and attributes.
			ev := ss.Events()
			if len(ev) != 3 {
				t.Fatalf("events = %+v, want 3", ev)
			}
			wantEv := []struct {
				name  string
				at    time.Time
				attrs map[attribute.Key]any
			}{
				{EventKeepaliveTimeout, t0.Add(1500 * time.Millisecond), nil},
				{EventGoAway, t0.Add(2 * time.Second), map[attribute.Key]any{
					AttrErrorCode: int64(0), AttrErrorName: "NO_ERROR", AttrLastStreamID: int64(7),
					AttrDebugData: "bye", AttrInitiator: "CLIENT"}},
				{EventRSTStream, t0.Add(2500 * time.Millisecond), map[attribute.Key]any{
					AttrErrorCode: int64(8), AttrErrorName: "CANCEL", AttrInitiator: "CLIENT"}},
			}
			for i, w := range wantEv {
				if ev[i].Name != w.name || !ev[i].Time.Equal(w.at) {
					t.Errorf("event %d = %s at %v, want %s at %v", i, ev[i].Name, ev[i].Time, w.name, w.at)
				}
				checkAttrs(t, w.name, ev[i].Attributes, w.attrs)
			}

			// The connection span.
			if cs.Parent().IsValid() || cs.SpanKind() != trace.SpanKindServer || cs.Status().Code != codes.Ok {
				t.Errorf("connection span parent %v kind %v status %v, want root server OK", cs.Parent(), cs.SpanKind(), cs.Status())
			}
			checkAttrs(t, "connection span", cs.Attributes(), map[attribute.Key]any{
				AttrConnectionID: "c-1", "network.peer.address": "10.1.2.3", "network.peer.port": int64(45678),
			})
		})
	}
}

var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)

func TestTraceparentRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		traceparent string
		wantTraceID string
	}{
		{name: "with client parent", traceparent: clientTraceparent, wantTraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "new root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tel, _ := recordingSetup(t)
			conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
			st := conn.StartStream(StreamStart{Traceparent: tc.traceparent, Method: "/a.B/C"})
			tp := st.Traceparent()
			if !traceparentRE.MatchString(tp) {
				t.Fatalf("Traceparent() = %q, want 00-<32 hex>-<16 hex>-01", tp)
			}
			ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
			sc := trace.SpanContextFromContext(ctx)
			if sc.TraceID().String() != st.TraceID() || sc.SpanID().String() != st.SpanID() || !sc.IsSampled() {
				t.Errorf("parsed %q = trace %s span %s sampled %v, want %s %s true",
					tp, sc.TraceID(), sc.SpanID(), sc.IsSampled(), st.TraceID(), st.SpanID())
			}
			if tc.wantTraceID != "" && st.TraceID() != tc.wantTraceID {
				t.Errorf("TraceID() = %s, want the client's %s", st.TraceID(), tc.wantTraceID)
			}
			if st.SpanID() == "00f067aa0ba902b7" {
				t.Error("SpanID() is the client's span id; want the stream span's own")
			}
			st.End(StreamEnd{At: time.Now()})
			conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
		})
	}
}

// TestTraceparentAsInject: what the app receives is what the OTel
// propagator would write for the stream span, the W3C flags it keeps
// (sampled, and Level 2's random) included, and the sampler's tracestate.
func TestTraceparentAsInject(t *testing.T) {
	tests := []struct {
		name        string
		traceparent string
		tracestate  string
		parent      bool // the client's traceparent is a valid parent
	}{
		{name: "new root"},
		{name: "sampled parent", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", parent: true},
		{name: "unsampled parent", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", parent: true},
		{name: "sampled parent with a random trace id", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", parent: true},
		{name: "unsampled parent with a random trace id", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02", parent: true},
		{name: "reserved flag bits in version 00: not a parent", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"},
		{name: "a later version's flags: the ones version 00 knows", traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-what-comes-next", parent: true},
		{name: "with tracestate", traceparent: clientTraceparent, tracestate: "vendor=a1,other=b2", parent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := testTracer(tracetest.NewSpanRecorder(), resource.Empty(), nil)
			defer tr.stop()
			conn := tr.StartConn(ConnStart{Peer: "127.0.0.1:1"})
			st := conn.StartStream(StreamStart{Traceparent: tc.traceparent, Tracestate: tc.tracestate, Method: "/a.B/C"})
			if parented := st.TraceID() == "4bf92f3577b34da6a3ce929d0e0e4736"; parented != tc.parent {
				t.Fatalf("stream span in trace %s: parented %v, want %v", st.TraceID(), parented, tc.parent)
			}
			want := propagation.MapCarrier{}
			propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), st.sc), want)
			if got := st.Traceparent(); got != want.Get("traceparent") {
				t.Errorf("Traceparent() = %q, want %q (propagation.TraceContext.Inject)", got, want.Get("traceparent"))
			}
			if got := st.Tracestate(); got != want.Get("tracestate") || got != tc.tracestate {
				t.Errorf("Tracestate() = %q, want %q (Inject %q)", got, tc.tracestate, want.Get("tracestate"))
			}
			st.End(StreamEnd{At: time.Now()})
			conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
		})
	}
}

func TestNotifiedSpan(t *testing.T) {
	tel, rec := recordingSetup(t)
	conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
	st := conn.StartStream(StreamStart{Traceparent: clientTraceparent, Method: "/a.B/C"})
	detected := time.Now()
	st.End(StreamEnd{At: detected, Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
	conn.End(detected, event.ReasonUnspecified, event.InitiatorUnspecified)

	if !st.Sampled() {
		t.Fatal("Sampled() = false for a stream span the always-on sampler kept")
	}
	ev := event.Event{ID: "ev-1", TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: st.Sampled(), DetectedAt: detected}
	tel.OnDelivered(ev, 2, 40*time.Millisecond)
	tel.OnDelivered(event.Event{ID: "no-trace"}, 1, time.Millisecond) // ignored: no ids
	unsampled := ev
	unsampled.ID, unsampled.TraceSampled = "unsampled", false
	tel.OnDelivered(unsampled, 1, time.Millisecond) // ignored: its parent was never exported
	shutdown(t, tel)

	spans := spansByName(rec.Ended())
	if len(rec.Ended()) != 3 {
		t.Fatalf("got %d spans %v, want connection, stream and one notify span", len(rec.Ended()), spans)
	}
	ns := spans[NotifySpanName]
	if ns == nil {
		t.Fatalf("no %s span in %v", NotifySpanName, spans)
	}
	if ns.Parent().SpanID().String() != st.SpanID() || ns.SpanContext().TraceID().String() != st.TraceID() {
		t.Errorf("notify span parent = %v, want the stream span %s/%s", ns.Parent(), st.TraceID(), st.SpanID())
	}
	if d := ns.EndTime().Sub(ns.StartTime()); d != 40*time.Millisecond {
		t.Errorf("notify span lasts %v, want the 40ms delivery latency", d)
	}
	if evs := ns.Events(); len(evs) != 1 || evs[0].Name != EventNotified {
		t.Fatalf("notify span events = %+v, want one %s", evs, EventNotified)
	}
	checkAttrs(t, EventNotified, ns.Events()[0].Attributes, map[attribute.Key]any{
		AttrNotifyLatencyMS: 40.0, AttrNotifyAttempts: int64(2),
	})
	checkAttrs(t, NotifySpanName, ns.Attributes(), map[attribute.Key]any{AttrEventID: "ev-1"})
}

func TestTracingOff(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "nothing configured", env: map[string]string{}},
		{name: "OTEL_SDK_DISABLED wins over an endpoint", env: map[string]string{
			"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "OTEL_TRACES_EXPORTER=none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(context.Background(), Options{})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			defer shutdown(t, tel)
			if tel.Tracing() || tel.Tracer() != nil || tel.proc != nil {
				t.Fatalf("Tracing() = %v, Tracer() = %v; want off", tel.Tracing(), tel.Tracer())
			}
			// The whole per-stream sequence on the nil helpers allocates
			// nothing and records nothing.
			tr := tel.Tracer()
			allocs := testing.AllocsPerRun(100, func() {
				c := tr.StartConn(ConnStart{Peer: "127.0.0.1:1"})
				s := c.StartStream(StreamStart{Traceparent: clientTraceparent, Method: "/a.B/C"})
				if s.Traceparent() != "" || s.TraceID() != "" || s.SpanID() != "" {
					t.Fatal("nil stream returned ids")
				}
				s.RSTStream(time.Time{}, 8, event.InitiatorClient)
				s.End(StreamEnd{})
				c.End(time.Time{}, event.ReasonUnspecified, event.InitiatorUnspecified)
				tr.Notified(event.Event{}, 1, 0)
			})
			if allocs != 0 {
				t.Errorf("tracing-off stream sequence allocates %v times, want 0", allocs)
			}
		})
	}
}

// clearOTelEnv unsets, for the test, the variables that turn tracing on.
func clearOTelEnv(t testing.TB) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	} {
		t.Setenv(k, "") // registers the restore
		if err := os.Unsetenv(k); err != nil {
			t.Fatalf("unset %s: %v", k, err)
		}
	}
}

func TestDroppedAfterShutdown(t *testing.T) {
	tel, rec := recordingSetup(t)
	conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
	st := conn.StartStream(StreamStart{Method: "/a.B/C"})
	shutdown(t, tel)
	st.RSTStream(time.Now(), 8, event.InitiatorClient)
	st.End(StreamEnd{At: time.Now()})
	if got := tel.Tracer().Dropped(); got != 2 {
		t.Errorf("Dropped() = %d after 2 operations past Shutdown, want 2", got)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans ended after Shutdown, want 0", n)
	}
}

// TestNilTelemetry: a relay built without telemetry passes nil and every
// call is a no-op, not a panic.
func TestNilTelemetry(t *testing.T) {
	var tel *Telemetry
	if tel.Tracing() || tel.Tracer() != nil || tel.Metrics() != nil {
		t.Fatal("nil Telemetry reports tracing or instruments")
	}
	m := tel.Metrics()
	m.ConnOpened()
	m.ConnClosed()
	m.StreamOpened()
	m.StreamClosed()
	m.Disconnect(event.ReasonGoAway, event.InitiatorClient)
	m.DetectionLatency(time.Second)
	m.NotifyLatency(time.Second)
	m.KeepalivePing()
	m.KeepaliveTimeout()
	m.AbuseGoAway("too_many_pings")
	tel.OnDelivered(event.Event{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"}, 1, time.Second)
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of nil Telemetry: %v", err)
	}
}

// TestSamplerFromEnv: the SDK's OTEL_TRACES_SAMPLER handling decides, and a
// dropped stream still propagates its ids with the sampled flag off.
func TestSamplerFromEnv(t *testing.T) {
	tests := []struct {
		name        string
		sampler     string
		traceparent string
		wantFlags   string
		wantStream  bool
	}{
		{name: "default follows a sampled client", traceparent: clientTraceparent, wantFlags: "01", wantStream: true},
		{name: "default follows an unsampled client", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", wantFlags: "00"},
		{name: "always_off", sampler: "always_off", traceparent: clientTraceparent, wantFlags: "00"},
		{name: "always_on overrides the client", sampler: "always_on", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", wantFlags: "01", wantStream: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			if tc.sampler != "" {
				t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			}
			tel, rec := recordingSetup(t)
			conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
			st := conn.StartStream(StreamStart{Traceparent: tc.traceparent, Method: "/a.B/C"})
			tp := st.Traceparent()
			if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + st.SpanID() + "-" + tc.wantFlags; tp != want {
				t.Errorf("Traceparent() = %q, want %q", tp, want)
			}
			st.RSTStream(time.Now(), 8, event.InitiatorClient)
			st.End(StreamEnd{At: time.Now()})
			conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
			tel.OnDelivered(event.Event{ID: "ev", TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: st.Sampled()}, 1, time.Millisecond)
			shutdown(t, tel)
			spans := spansByName(rec.Ended())
			if got := spans["a.B/C"] != nil; got != tc.wantStream {
				t.Errorf("stream span exported = %v, want %v", got, tc.wantStream)
			}
			// The notify span follows its stream: never an orphan.
			if got := spans[NotifySpanName] != nil; got != tc.wantStream {
				t.Errorf("notify span exported = %v, want %v", got, tc.wantStream)
			}
		})
	}
}

// TestConnRTTAttributes: a connection's measured RTT ends up on its span
// in milliseconds; an RTT never measured adds no attribute at all, so that
// "unknown" cannot be read as 0 ms.
func TestConnRTTAttributes(t *testing.T) {
	tests := []struct {
		name    string
		earlier []event.RTT // set before rtt
		rtt     event.RTT
		want    map[attribute.Key]any // nil: none of the rtt attributes
	}{
		{name: "measured", rtt: event.RTT{Last: 42 * time.Millisecond, Min: 40 * time.Millisecond, Smoothed: 41500 * time.Microsecond, Var: 2 * time.Millisecond, Samples: 3},
			want: map[attribute.Key]any{AttrRTTLastMS: 42.0, AttrRTTMinMS: 40.0, AttrRTTSmoothedMS: 41.5, AttrRTTVarMS: 2.0, AttrRTTSamples: int64(3)}},
		{name: "set twice: the last wins, once", earlier: []event.RTT{{Last: time.Second, Min: time.Second, Smoothed: time.Second, Var: time.Second, Samples: 1}},
			rtt:  event.RTT{Last: 42 * time.Millisecond, Min: 40 * time.Millisecond, Smoothed: 41500 * time.Microsecond, Var: 2 * time.Millisecond, Samples: 3},
			want: map[attribute.Key]any{AttrRTTLastMS: 42.0, AttrRTTMinMS: 40.0, AttrRTTSmoothedMS: 41.5, AttrRTTVarMS: 2.0, AttrRTTSamples: int64(3)}},
		{name: "never measured", rtt: event.RTT{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel, rec := recordingSetup(t)
			conn := tel.Tracer().StartConn(ConnStart{ID: "c-1", Peer: "192.0.2.1:1234", Start: time.Now()})
			for _, r := range tt.earlier {
				conn.RTT(r)
			}
			conn.RTT(tt.rtt)
			conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
			shutdown(t, tel)
			cs := spansByName(rec.Ended())[ConnectionSpanName]
			if cs == nil {
				t.Fatalf("no %s span", ConnectionSpanName)
			}
			if tt.want != nil {
				checkAttrs(t, "connection span", cs.Attributes(), tt.want)
				if n, keys := len(cs.Attributes()), len(attrMap(cs.Attributes())); n != keys {
					t.Errorf("%d attributes for %d keys: a key repeated", n, keys)
				}
				return
			}
			for _, k := range []attribute.Key{AttrRTTLastMS, AttrRTTMinMS, AttrRTTSmoothedMS, AttrRTTVarMS, AttrRTTSamples} {
				if v, ok := attrMap(cs.Attributes())[k]; ok {
					t.Errorf("%s = %v on a connection never measured, want absent", k, v)
				}
			}
		})
	}
}
