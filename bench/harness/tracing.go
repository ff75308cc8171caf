//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// Traced is hangup's saturated unary run with every stream traced
// (always-on sampling, OTLP/gRPC export to a receiver in this process).
type Traced struct {
	Saturation    Saturation
	CPUPerMillion float64 // hangup's CPU seconds per million calls, traced
	Spans         int64   // spans the receiver got during the run
	// Dropped is the sidecar's hangup_telemetry_spans_dropped_total after
	// the run, all places together; -1 when it could not be read.
	Dropped int64
}

// spanSink is an OTLP/gRPC trace receiver that counts spans and drops
// them: the cost measured is the sidecar's, not a collector's.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// spansDropped sums the series of hangup_telemetry_spans_dropped_total on
// hangup's /metrics at admin; -1 when they cannot be read.
func spansDropped(ctx context.Context, admin string) int64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1
	}
	n, found := int64(0), false
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "hangup_telemetry_spans_dropped_total") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return -1
		}
		n, found = n+int64(v), true
	}
	if !found {
		return -1
	}
	return n
}

// measureTraced runs the saturated unary load through a hangup started
// with tracing always on, exporting to a spanSink.
func measureTraced(ctx context.Context, env PeerEnv, dir string, d time.Duration, conns, streams int) (Traced, error) {
	var t Traced
	sink := &spanSink{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, sink)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return t, fmt.Errorf("listen for OTLP: %w", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	defer func() { gs.Stop(); <-done }()

	env.HangupEnv = append(env.HangupEnv, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String(), "OTEL_TRACES_SAMPLER=always_on")
	p, err := StartPeer(ctx, Hangup, env)
	if err != nil {
		return t, err
	}
	defer p.Stop()
	before, uerr := p.Usage()
	if t.Saturation, _, err = runH2load(ctx, dir, p.Addr, d, conns, streams, 0); err != nil {
		return t, err
	}
	if after, err := p.Usage(); uerr == nil && err == nil && t.Saturation.PerSecond > 0 {
		t.CPUPerMillion = (after.CPUSeconds - before.CPUSeconds) / (t.Saturation.PerSecond * t.Saturation.Wall) * 1e6
	}
	t.Dropped = spansDropped(ctx, p.AdminAddr)
	// The batch span processor exports every 5 s or 512 spans: a
	// saturated run has sent many batches by now.
	if t.Spans = sink.spans.Load(); t.Spans == 0 {
		return t, errors.New("no span reached the OTLP receiver: tracing was not on")
	}
	return t, nil
}
