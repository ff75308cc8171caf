package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// gateExporter counts the spans it exports; each export waits until open
// is closed, then returns err.
type gateExporter struct {
	open     chan struct{}
	err      error
	exported atomic.Int64
}

func (e *gateExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case <-e.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e.err != nil {
		return e.err
	}
	e.exported.Add(int64(len(spans)))
	return nil
}

func (*gateExporter) Shutdown(context.Context) error { return nil }

// lockedBuffer is a bytes.Buffer for a logger written from more than one
// goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSpansDroppedAreCounted: every stream span is exported or counted as
// dropped in /metrics, by where it was lost, and the loss is logged. The
// batch span processor of the OpenTelemetry SDK drops spans silently when
// its queue is full: before hangup counted them, the export_queue series
// did not exist.
func TestSpansDroppedAreCounted(t *testing.T) {
	const streams = 20
	tests := []struct {
		name      string
		queue     string // OTEL_BSP_MAX_QUEUE_SIZE
		exportErr error
		// the exporter stays blocked until the drops are counted: the
		// queue holds queue spans, the rest are dropped
		blocked      bool
		where        string
		dropped      int
		wantExported int64
	}{
		{name: "export queue full", queue: "4", blocked: true, where: DropExportQueue, dropped: streams - 4, wantExported: 4},
		{name: "export failed", queue: "2048", exportErr: errors.New("collector refused"), where: DropExport, dropped: streams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", tc.queue)
			t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
			exp := &gateExporter{open: make(chan struct{}), err: tc.exportErr}
			if !tc.blocked {
				close(exp.open)
			}
			var logs lockedBuffer
			tel, err := Setup(context.Background(), Options{SpanExporter: exp, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			srv := httptest.NewServer(tel.MetricsHandler())
			defer srv.Close()
			conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
			for i := range streams {
				s := conn.StartStream(StreamStart{Method: "/a.B/C", StreamID: uint32(2*i + 1)})
				s.End(StreamEnd{At: time.Now()})
			}
			// Every span's fate is settled, with no wait, once the span
			// goroutine has applied every end (the processor's OnEnd,
			// which counts an export_queue drop, runs there) and, with
			// the exporter open, the processor has flushed its queue (a
			// failed export is counted before it returns).
			tel.Tracer().stop()
			if !tc.blocked {
				if err := tel.proc.ForceFlush(context.Background()); err != nil && !errors.Is(err, tc.exportErr) {
					t.Fatalf("ForceFlush: %v", err)
				}
			}
			sample := "hangup_telemetry_spans_dropped_total{where=" + tc.where + "}"
			if got := testtools.ScrapeMetrics(t, srv.URL); got[sample] != float64(tc.dropped) {
				t.Errorf("%s = %v, want %d; /metrics has %v", sample, got[sample], tc.dropped, keys(got))
			}
			if tc.blocked {
				close(exp.open)
			}
			// The connection span stays open: it would be one more to
			// export or drop.
			shutdown(t, tel)
			if got := exp.exported.Load(); got != tc.wantExported {
				t.Errorf("exported %d spans, want %d", got, tc.wantExported)
			}
			if !strings.Contains(logs.String(), "spans dropped") || !strings.Contains(logs.String(), tc.where+"=") {
				t.Errorf("no warning naming %s in the log:\n%s", tc.where, logs.String())
			}
		})
	}
}

// TestDropWarningRateLimited: drops are logged at once, then at most once
// per dropWarnEvery with the counts since the last warning.
func TestDropWarningRateLimited(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	const every = dropWarnEvery
	steps := []struct {
		name     string
		at       time.Duration // after t0
		drop     Drops         // added before warn
		wantWarn string        // "" for no warning
	}{
		{name: "nothing dropped", at: 0},
		{name: "first drop warns at once", at: time.Second, drop: Drops{ExportQueue: 3},
			wantWarn: "span_queue=0 export_queue=3 export=0 total=3"},
		{name: "more within the interval wait", at: every / 2, drop: Drops{SpanQueue: 2}},
		{name: "still within", at: time.Second + every - 1, drop: Drops{Export: 1}},
		{name: "after the interval, the counts since", at: time.Second + every,
			wantWarn: "span_queue=2 export_queue=0 export=1 total=6"},
		{name: "nothing new, no warning", at: 3 * every},
		{name: "new drop after quiet warns at once", at: 3*every + time.Second, drop: Drops{Export: 5},
			wantWarn: "span_queue=0 export_queue=0 export=5 total=11"},
	}
	var logs lockedBuffer
	c := newDropCounter(testLogger(&logs))
	var now time.Time
	c.now = func() time.Time { return now }
	for _, st := range steps {
		now = t0.Add(st.at)
		c.spanQueue.Add(st.drop.SpanQueue)
		c.exportQueue.Add(st.drop.ExportQueue)
		c.export.Add(st.drop.Export)
		before := logs.String()
		c.warn()
		got := strings.TrimPrefix(logs.String(), before)
		switch {
		case st.wantWarn == "" && got != "":
			t.Errorf("%s: warned %q, want nothing", st.name, got)
		case st.wantWarn != "" && !strings.Contains(got, st.wantWarn):
			t.Errorf("%s: warned %q, want one with %q", st.name, got, st.wantWarn)
		}
	}
}

// testLogger logs text without times to w.
func testLogger(w *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// TestDropWarningConcurrent: goroutines dropping and warning at once (the
// span goroutine and the batch span processor's do) write one warning per
// interval between them, and the next one counts every drop since.
func TestDropWarningConcurrent(t *testing.T) {
	const goroutines, drops = 4, 100
	var logs lockedBuffer
	c := newDropCounter(testLogger(&logs))
	var now atomic.Pointer[time.Time]
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	now.Store(&t0)
	c.now = func() time.Time { return *now.Load() }
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range drops {
				c.export.Add(1)
				c.warn()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(logs.String(), "spans dropped"); n != 1 {
		t.Fatalf("%d warnings within one interval, want 1:\n%s", n, logs.String())
	}
	t1 := t0.Add(dropWarnEvery)
	now.Store(&t1)
	c.export.Add(1) // one at least the first warning cannot have seen
	c.warn()
	if n := strings.Count(logs.String(), "spans dropped"); n != 2 {
		t.Fatalf("%d warnings after the interval, want 2:\n%s", n, logs.String())
	}
	if want := fmt.Sprintf("total=%d", goroutines*drops+1); !strings.Contains(logs.String(), want) {
		t.Errorf("no warning with %s:\n%s", want, logs.String())
	}
}

// TestBatchFromEnv: the batch span processor's sizes come from the
// standard variables as the SDK reads them, but with a clear error for a
// bad value, where the SDK falls back to its default.
func TestBatchFromEnv(t *testing.T) {
	tests := []struct {
		name         string
		queue, batch string
		want         batchSizes
		wantErr      string
	}{
		{name: "defaults", want: batchSizes{queue: defaultBSPQueue, batch: defaultBSPBatch}},
		{name: "both set", queue: "100", batch: "10", want: batchSizes{queue: 100, batch: 10}},
		{name: "batch over the queue, the queue under the default batch", queue: "100", batch: "1000", want: batchSizes{queue: 100, batch: 100}},
		{name: "batch over the queue, the queue over the default batch", queue: "1000", batch: "2000", want: batchSizes{queue: 1000, batch: defaultBSPBatch}},
		{name: "not a number", queue: "lots", wantErr: `OTEL_BSP_MAX_QUEUE_SIZE="lots": want a positive number`},
		{name: "zero batch", batch: "0", wantErr: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE="0": want a positive number`},
		{name: "negative queue", queue: "-1", wantErr: `OTEL_BSP_MAX_QUEUE_SIZE="-1": want a positive number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", tc.queue)
			t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", tc.batch)
			got, err := batchFromEnv()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("batchFromEnv: %v", err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// collectorAnswer is what a test OTLP collector answers to every export: a
// partial success rejecting up to rejected of the request's spans, with
// msg, or with refuse an error (HTTP 400 Bad Request, gRPC InvalidArgument).
type collectorAnswer struct {
	rejected int64
	msg      string
	refuse   bool
}

// partial is the answer's partial success for req, nil when it has none.
func (a collectorAnswer) partial(req *coltracepb.ExportTraceServiceRequest) *coltracepb.ExportTracePartialSuccess {
	if a.rejected == 0 && a.msg == "" {
		return nil
	}
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	return &coltracepb.ExportTracePartialSuccess{RejectedSpans: min(a.rejected, n), ErrorMessage: a.msg}
}

// grpcCollector is an OTLP/gRPC trace service that answers every export
// with answer.
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	answer collectorAnswer
}

func (c *grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if c.answer.refuse {
		return nil, status.Error(grpccodes.InvalidArgument, "refused by the test collector")
	}
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: c.answer.partial(req)}, nil
}

// otlpCollector starts an OTLP collector on 127.0.0.1 for protocol (grpc or
// http/protobuf) that answers every export with answer, and returns its
// endpoint URL.
func otlpCollector(t *testing.T, protocol string, answer collectorAnswer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if protocol == "grpc" {
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, &grpcCollector{answer: answer})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		t.Cleanup(func() {
			srv.Stop()
			if err := <-served; err != nil {
				t.Errorf("gRPC collector: %v", err)
			}
		})
		return "http://" + ln.Addr().String()
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := readBody(r)
		req := &coltracepb.ExportTraceServiceRequest{}
		if err == nil {
			err = proto.Unmarshal(b, req)
		}
		if err != nil || answer.refuse {
			http.Error(w, fmt.Sprintf("refused by the test collector (%v)", err), http.StatusBadRequest)
			return
		}
		out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: answer.partial(req)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestExportDropsFromCollectorAnswer: a batch the collector refuses is
// counted as dropped (where export), whole; one it takes with a partial
// success counts only the spans it rejected, and none when the partial
// success is a warning that rejected nothing. Over both OTLP protocols,
// through the SDK's clients, whose partial-success error is what is read.
func TestExportDropsFromCollectorAnswer(t *testing.T) {
	const streams = 20
	tests := []struct {
		name     string
		protocol string
		answer   collectorAnswer
		want     uint64 // dropped, where export
	}{
		{name: "http: partial success", protocol: "http/protobuf", answer: collectorAnswer{rejected: 3, msg: "3 spans (of 20) too old"}, want: 3},
		{name: "http: partial success, a warning", protocol: "http/protobuf", answer: collectorAnswer{msg: "attributes truncated"}, want: 0},
		{name: "http: refused", protocol: "http/protobuf", answer: collectorAnswer{refuse: true}, want: streams},
		{name: "grpc: partial success", protocol: "grpc", answer: collectorAnswer{rejected: 3, msg: "3 spans (of 20) too old"}, want: 3},
		{name: "grpc: partial success, a warning", protocol: "grpc", answer: collectorAnswer{msg: "attributes truncated"}, want: 0},
		{name: "grpc: refused", protocol: "grpc", answer: collectorAnswer{refuse: true}, want: streams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlpCollector(t, tc.protocol, tc.answer))
			// One export, of every stream span, by Shutdown's flush.
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
			tel, err := Setup(context.Background(), Options{})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:1"})
			for i := range streams {
				s := conn.StartStream(StreamStart{Method: "/a.B/C", StreamID: uint32(2*i + 1)})
				s.End(StreamEnd{At: time.Now()})
			}
			// The connection span stays open: it would be one more span.
			shutdown(t, tel)
			if got, want := tel.Tracer().Drops(), (Drops{Export: tc.want}); got != want {
				t.Errorf("dropped %+v, want %+v", got, want)
			}
		})
	}
}

// TestExportLost: how many spans of a batch of 10 an export error lost,
// for the shapes the exporters give their errors. (The SDK clients' text
// itself is pinned by TestExportDropsFromCollectorAnswer.)
func TestExportLost(t *testing.T) {
	partial := func(msg string, n int) error {
		return fmt.Errorf("OTLP partial success: %s (%d spans rejected)", msg, n)
	}
	tests := []struct {
		name string
		err  error
		want uint64
	}{
		{name: "no error", err: nil, want: 0},
		{name: "failed", err: errors.New("connection refused"), want: 10},
		{name: "partial success", err: partial("too old", 3), want: 3},
		{name: "partial success, a warning", err: partial("truncated", 0), want: 0},
		{name: "wrapped", err: fmt.Errorf("traces export: %w", errors.Join(partial("too old", 3))), want: 3},
		{name: "message with parentheses", err: partial("bad (7 spans rejected) (of 10)", 2), want: 2},
		{name: "joined partial successes", err: errors.Join(partial("a", 2), partial("b", 1)), want: 3},
		{name: "partial success and a failure", err: errors.Join(partial("a", 2), errors.New("rpc error: code = Unavailable")), want: 10},
		{name: "more rejected than sent", err: partial("?", 50), want: 10},
		{name: "count not a number", err: errors.New("OTLP partial success: x (many spans rejected)"), want: 10},
		{name: "no count", err: errors.New("OTLP partial success: x spans rejected)"), want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exportLost(tc.err, 10); got != tc.want {
				t.Errorf("exportLost(%v, 10) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestDropCounterNilLogger: a drop counter made without a logger (as tests
// and benchmarks make theirs) counts and warns into nothing, not a panic.
func TestDropCounterNilLogger(t *testing.T) {
	c := newDropCounter(nil)
	c.export.Add(1)
	c.warn()
	if got := c.load(); got != (Drops{Export: 1}) {
		t.Errorf("counted %+v, want one export drop", got)
	}
}

// TestDocsQuoteDropWarnEvery: docs/metrics.md, on the dropped spans'
// series, gives the warning interval dropWarnEvery is.
func TestDocsQuoteDropWarnEvery(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatalf("read the metrics doc: %v", err)
	}
	want := fmt.Sprintf("a warning at most every %g s", dropWarnEvery.Seconds())
	for line := range strings.Lines(string(doc)) {
		if strings.HasPrefix(line, "| `hangup_telemetry_spans_dropped_total`") {
			if !strings.Contains(line, want) {
				t.Errorf("docs/metrics.md's row of hangup_telemetry_spans_dropped_total does not say %q:\n%s", want, line)
			}
			return
		}
	}
	t.Error("docs/metrics.md has no row for hangup_telemetry_spans_dropped_total")
}
