package jaegertest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestSpansReachJaeger sends a connection and a stream span through
// telemetry.Setup, configured only by OTEL_* variables, and reads them back
// through the query API with their events, tags, parent and link.
func TestSpansReachJaeger(t *testing.T) {
	j := Start(t)
	tests := []struct {
		name     string
		protocol string
		endpoint string
		traceID  string // the client's; distinct per case, so that traces do not mix
	}{
		{name: "otlp http", protocol: "http/protobuf", endpoint: j.OTLPEndpoint, traceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "otlp grpc", protocol: "grpc", endpoint: j.OTLPGRPCEndpoint, traceID: "5bf92f3577b34da6a3ce929d0e0e4736"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			service := "hangup-jaegertest-" + tc.protocol
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_SERVICE_NAME", service)
			tel, err := telemetry.Setup(context.Background(), telemetry.Options{})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			t0 := time.Now()
			conn := tel.Tracer().StartConn(telemetry.ConnStart{ID: "conn-1", Peer: "127.0.0.1:40000", Start: t0})
			st := conn.StartStream(telemetry.StreamStart{
				Traceparent: "00-" + tc.traceID + "-00f067aa0ba902b7-01", Method: "/echo.v1.Echo/Stream",
				Authority: "echo:50051", StreamID: 1, Start: t0.Add(time.Millisecond),
			})
			st.RSTStream(t0.Add(20*time.Millisecond), 8, event.InitiatorClient)
			st.End(telemetry.StreamEnd{At: t0.Add(21 * time.Millisecond), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
			conn.End(t0.Add(30*time.Millisecond), event.ReasonUnspecified, event.InitiatorUnspecified)
			tel.OnDelivered(event.Event{ID: "ev-1", TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: st.Sampled()}, 1, 5*time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown (flush to %s): %v", tc.endpoint, err)
			}

			tr := j.WaitTrace(t, service, func(tr *Trace) bool {
				return tr.TraceID == st.TraceID() && tr.Span("echo.v1.Echo/Stream") != nil && tr.Span(telemetry.NotifySpanName) != nil
			}, 20*time.Second)

			s := tr.Span("echo.v1.Echo/Stream")
			for k, want := range map[string]any{
				"rpc.system": "grpc", "rpc.service": "echo.v1.Echo", "rpc.method": "Stream",
				"span.kind": "server", "otel.status_code": "ERROR",
				"hangup.disconnect.reason": "RST_STREAM", "hangup.disconnect.initiator": "CLIENT",
			} {
				if got, ok := s.Tag(k); !ok || got != want {
					t.Errorf("stream span tag %s = %v (present %v), want %v", k, got, ok, want)
				}
			}
			if got := s.ParentSpanID(); got != "00f067aa0ba902b7" {
				t.Errorf("stream span parent = %q, want the client's 00f067aa0ba902b7", got)
			}
			linked := false
			for _, r := range s.References {
				linked = linked || (r.TraceID == conn.TraceID() && r.SpanID == conn.SpanID())
			}
			if !linked {
				t.Errorf("stream span references %+v, want a link to the connection span %s/%s", s.References, conn.TraceID(), conn.SpanID())
			}
			ev := s.Event(telemetry.EventRSTStream)
			if ev == nil {
				t.Fatalf("stream span logs %+v, want a %s event", s.Logs, telemetry.EventRSTStream)
			}
			if got, _ := ev.Field("http2.error_name"); got != "CANCEL" {
				t.Errorf("%s http2.error_name = %v, want CANCEL", telemetry.EventRSTStream, got)
			}
			if want := t0.Add(20 * time.Millisecond).UnixMicro(); ev.Timestamp != want {
				t.Errorf("%s at %d µs, want %d", telemetry.EventRSTStream, ev.Timestamp, want)
			}
			ns := tr.Span(telemetry.NotifySpanName)
			if ns.ParentSpanID() != st.SpanID() || ns.Event(telemetry.EventNotified) == nil {
				t.Errorf("notify span parent %q logs %+v, want child of %s with a %s event",
					ns.ParentSpanID(), ns.Logs, st.SpanID(), telemetry.EventNotified)
			}
			// The search docs/jaeger.md shows: by disconnect reason.
			for _, c := range []struct {
				tags map[string]string
				want int
			}{
				{map[string]string{"hangup.disconnect.reason": "RST_STREAM"}, 1},
				{map[string]string{"hangup.disconnect.reason": "GOAWAY"}, 0},
			} {
				if got := j.Find(t, service, c.tags); len(got) != c.want {
					t.Errorf("Find(%v) = %d traces, want %d", c.tags, len(got), c.want)
				}
			}
			if p := tr.Processes[s.ProcessID]; p.ServiceName != service {
				t.Errorf("process service = %q, want %q", p.ServiceName, service)
			}
		})
	}
}
