package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangup-dev/hangup/internal/jaegertest"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestDrawFromJaeger exports one disconnected stream to a real Jaeger and
// draws it, found by tag and by trace id, as scripts/trace-picture.sh does.
func TestDrawFromJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	const service = "hangup-waterfall-test"
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLPEndpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", service)
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{})
	if err != nil {
		t.Fatalf("telemetry.Setup: %v", err)
	}
	t0 := time.Now()
	conn := tel.Tracer().StartConn(telemetry.ConnStart{ID: "c1", Peer: "127.0.0.1:40000", Start: t0})
	st := conn.StartStream(telemetry.StreamStart{Method: "/echo.v1.Echo/Stream", StreamID: 1, Start: t0})
	st.RSTStream(t0.Add(2*time.Millisecond), 8, event.InitiatorClient)
	st.End(telemetry.StreamEnd{At: t0.Add(2 * time.Millisecond), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
	conn.End(t0.Add(3*time.Millisecond), event.ReasonUnspecified, event.InitiatorUnspecified)
	tel.OnDelivered(event.Event{ID: "e1", TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: st.Sampled()}, 1, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("flush spans to Jaeger: %v", err)
	}

	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "search by tag", args: []string{"-jaeger", j.QueryURL, "-service", service, "-tag", "hangup.disconnect.reason=RST_STREAM", "-wait", "20s"}},
		{name: "trace id", args: []string{"-jaeger", j.QueryURL, "-trace", st.TraceID()}},
		{name: "no match", args: []string{"-jaeger", j.QueryURL, "-service", service, "-tag", "hangup.disconnect.reason=GOAWAY"}, wantErr: "no trace of service"},
		{name: "neither trace nor service", args: []string{"-jaeger", j.QueryURL}, wantErr: "-jaeger needs -trace"},
		{name: "bad tag", args: []string{"-jaeger", j.QueryURL, "-service", service, "-tag", "reason"}, wantErr: "want key=value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".png")
			var stdout bytes.Buffer
			err := run(append(tc.args, "-o", out), &stdout)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			// The stream span and its hangup.notify child: two spans.
			if want := "trace " + st.TraceID() + " (2 spans)"; !strings.Contains(stdout.String(), want) {
				t.Errorf("stdout %q, want it to say %q", stdout.String(), want)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := png.Decode(f); err != nil {
				t.Errorf("%s is no PNG: %v", out, err)
			}
		})
	}
}
