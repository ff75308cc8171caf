package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/jaegertest"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// TestTracesInJaeger runs disconnects through the real sidecar exporting
// to a real Jaeger (v2, memory storage, 127.0.0.1 only) and reads the
// stream spans back from Jaeger's HTTP API: their name, kind, attributes,
// events, error status, parent (the client's span) and link (the
// connection's span); the app received a traceparent naming the sidecar's
// span; and /metrics moved by exactly the disconnects made.
func TestTracesInJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	const service = "hangup-e2e"
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLPEndpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", service)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	app, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--keepalive-time", "1s", "--keepalive-timeout", "1s")
	metrics := "http://" + sc.AdminAddr + "/metrics"

	tests := []struct {
		name   string
		leave  func(*h2raw.Client)
		reason event.Reason
		event  string // span event the disconnect leaves; "" for none
	}{
		{"RST_STREAM", func(c *h2raw.Client) { _ = c.Framer.WriteRSTStream(1, http2.ErrCodeCancel) }, event.ReasonRSTStream, "http2.rst_stream"},
		{"keepalive timeout", func(*h2raw.Client) {}, event.ReasonKeepaliveTimeout, "keepalive.ping_timeout"},
		{"connection reset", func(c *h2raw.Client) { _ = c.Reset() }, event.ReasonConnectionReset, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testtools.ScrapeMetrics(t, metrics)
			traceID, parentID := randomHex(t, 16), randomHex(t, 8)
			c := openRawStream(t, sc.Addr, "traceparent", "00-"+traceID+"-"+parentID+"-01")
			tt.leave(c)

			ev := receive(t, recv, 1, 10*time.Second)[0].Event
			if ev.Reason != tt.reason || ev.TraceID != traceID || len(ev.SpanID) != 16 {
				t.Fatalf("event %+v, want %v in trace %s with a span id", ev, tt.reason, traceID)
			}
			call := waitCall(t, app, 10*time.Second)
			if got, want := call.Metadata.Get("traceparent"), "00-"+traceID+"-"+ev.SpanID+"-01"; len(got) != 1 || got[0] != want {
				t.Errorf("app got traceparent %q, want %q naming the sidecar's span", got, want)
			}

			trace := j.WaitTrace(t, service, func(tr *jaegertest.Trace) bool {
				return tr.TraceID == traceID && spanByID(tr, ev.SpanID) != nil
			}, 15*time.Second)
			span := spanByID(&trace, ev.SpanID)
			wantTags := map[string]any{
				"span.kind": "server", "rpc.system": "grpc", "rpc.service": "grpc.testing.TestService",
				"rpc.method": "FullDuplexCall", "otel.status_code": "ERROR",
				"hangup.disconnect.reason": tt.reason.String(), "server.address": "hangup.test",
			}
			if span.OperationName != "grpc.testing.TestService/FullDuplexCall" {
				t.Errorf("span name %q", span.OperationName)
			}
			for k, want := range wantTags {
				if got, ok := span.Tag(k); !ok || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("tag %s = %v, want %v", k, got, want)
				}
			}
			if p := span.ParentSpanID(); p != parentID {
				t.Errorf("parent span %q, want the client's %q", p, parentID)
			}
			if !hasLink(span) {
				t.Errorf("stream span has no link to its connection's span: %+v", span.References)
			}
			if tt.event != "" && span.Event(tt.event) == nil {
				t.Errorf("span has no %s event: %+v", tt.event, span.Logs)
			}

			after := testtools.ScrapeMetrics(t, metrics)
			key := fmt.Sprintf("hangup_disconnects_total{initiator=%s,reason=%s}", ev.Initiator, tt.reason)
			streams := 1.0
			if tt.reason != event.ReasonRSTStream {
				streams = 2 // the stream's event and the connection's
			}
			if d := after[key] - before[key]; d != streams {
				t.Errorf("%s moved by %v, want %v", key, d, streams)
			}
			if tt.reason == event.ReasonKeepaliveTimeout {
				k := "hangup_keepalive_timeouts_total"
				if d := after[k] - before[k]; d != 1 {
					t.Errorf("%s moved by %v, want 1", k, d)
				}
			}
			drain(recv)
		})
	}
}

func spanByID(tr *jaegertest.Trace, id string) *jaegertest.Span {
	for i := range tr.Spans {
		if tr.Spans[i].SpanID == id {
			return &tr.Spans[i]
		}
	}
	return nil
}

func hasLink(s *jaegertest.Span) bool {
	for _, r := range s.References {
		if r.RefType == "FOLLOWS_FROM" {
			return true
		}
	}
	return false
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// drain empties the receiver of the scenario's remaining events.
func drain(r *demoapp.Receiver) {
	for {
		select {
		case <-r.Events:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}
