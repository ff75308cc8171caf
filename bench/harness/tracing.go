//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// The batch span processor exports every 5 s or 512 spans: a
	// saturated run has sent many batches by now.
	if t.Spans = sink.spans.Load(); t.Spans == 0 {
		return t, errors.New("no span reached the OTLP receiver: tracing was not on")
	}
	return t, nil
}
