//go:build linux

package harness

import (
	"context"
	"net"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// request builds an ExportTraceServiceRequest with the given number of
// spans in each scope of each resource.
func request(t *testing.T, resources ...[]int) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{}
	for _, scopes := range resources {
		rs := &tracepb.ResourceSpans{SchemaUrl: "s"}
		for _, n := range scopes {
			ss := &tracepb.ScopeSpans{SchemaUrl: "s"}
			for i := range n {
				ss.Spans = append(ss.Spans, &tracepb.Span{Name: "span", SpanId: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}})
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	return req
}

func TestCountSpans(t *testing.T) {
	tests := []struct {
		name      string
		resources [][]int
		want      int64
	}{
		{"empty request", nil, 0},
		{"one span", [][]int{{1}}, 1},
		{"a batch in one scope", [][]int{{512}}, 512},
		{"resources and scopes", [][]int{{3, 0, 2}, {}, {7}}, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(request(t, tt.resources...))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := countSpans(b); err != nil || got != tt.want {
				t.Errorf("countSpans = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	t.Run("truncated request", func(t *testing.T) {
		b, err := proto.Marshal(request(t, []int{2}))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := countSpans(b[:len(b)-3]); err == nil {
			t.Errorf("countSpans of a truncated request = %d, nil; want an error", n)
		}
	})
}

// TestSpanSinkServesOTLP: an OTLP/gRPC client's Export reaches the sink,
// which counts its spans and answers with a response the client accepts.
func TestSpanSinkServesOTLP(t *testing.T) {
	sink := &spanSink{}
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	sink.register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	defer func() { gs.Stop(); <-done }()

	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := coltracepb.NewTraceServiceClient(cc)
	for _, resources := range [][][]int{{{2, 3}}, {{1}, {4}}} {
		if _, err := client.Export(ctx, request(t, resources...)); err != nil {
			t.Fatalf("Export: %v", err)
		}
	}
	if got := sink.spans.Load(); got != 10 {
		t.Errorf("sink counted %d spans, want 10", got)
	}
}
