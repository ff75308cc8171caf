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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
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
// them: the cost measured is the sidecar's, not a collector's. It counts
// the spans in the request's bytes without decoding them (rawCodec), since
// it shares the cores with the sidecar under test: decoding every span
// into Go structs cost it about 11 µs per span, a collector's work that in
// a cluster runs elsewhere.
type spanSink struct {
	spans atomic.Int64
}

// rawMessage is a gRPC message kept as its protobuf bytes.
type rawMessage []byte

// rawCodec hands the spanSink's handler the request's bytes as they came
// and answers with an empty message (a valid ExportTraceServiceResponse).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *m, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*m = data
	return nil
}

// register serves the OTLP trace service's Export on gs, which must use
// rawCodec.
func (s *spanSink) register(gs *grpc.Server) {
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req rawMessage
				if err := dec(&req); err != nil {
					return nil, err
				}
				n, err := countSpans(req)
				if err != nil {
					return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
				}
				s.spans.Add(n)
				return &rawMessage{}, nil
			},
		}},
	}, s)
}

// countSpans counts the spans of an ExportTraceServiceRequest from its
// wire form: resource_spans (1) → scope_spans (2) → spans (2).
func countSpans(req []byte) (int64, error) {
	var n int64
	err := eachField(req, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the bytes of every length-delimited field number
// num of the message b, skipping the other fields.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("tag: %w", protowire.ParseError(l))
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return fmt.Errorf("field %d: %w", n, protowire.ParseError(l))
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return fmt.Errorf("field %d: %w", n, protowire.ParseError(l))
		}
		b = b[l:]
	}
	return nil
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
	p, sink, stop, err := startTraced(ctx, env)
	if err != nil {
		return t, err
	}
	defer stop()
	if t.Saturation, t.CPUPerMillion, err = saturate(ctx, dir, p, d, conns, streams); err != nil {
		return t, err
	}
	t.Dropped = spansDropped(ctx, p.AdminAddr)
	// The batch span processor exports every 5 s or 512 spans: a
	// saturated run has sent many batches by now.
	if t.Spans = sink.spans.Load(); t.Spans == 0 {
		return t, errors.New("no span reached the OTLP receiver: tracing was not on")
	}
	return t, nil
}

// StartTraced starts hangup with every stream traced
// (OTEL_TRACES_SAMPLER=always_on), exporting over OTLP/gRPC to a receiver
// in this process that counts the spans without decoding them; spans reads
// that count, stop stops both.
func StartTraced(ctx context.Context, env PeerEnv) (p *Peer, spans func() int64, stop func(), err error) {
	p, sink, stop, err := startTraced(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, sink.spans.Load, stop, nil
}

// startTraced starts hangup with tracing always on, exporting over
// OTLP/gRPC to a spanSink in this process; stop stops both.
func startTraced(ctx context.Context, env PeerEnv) (p *Peer, sink *spanSink, stop func(), err error) {
	sink = &spanSink{}
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	sink.register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen for OTLP: %w", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	stopSink := func() { gs.Stop(); <-done }

	env.HangupEnv = append(env.HangupEnv, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String(), "OTEL_TRACES_SAMPLER=always_on")
	if p, err = StartPeer(ctx, Hangup, env); err != nil {
		stopSink()
		return nil, nil, nil, err
	}
	return p, sink, func() { p.Stop(); stopSink() }, nil
}
