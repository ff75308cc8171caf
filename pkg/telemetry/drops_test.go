package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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

// waitSample waits until /metrics at url has sample at want.
func waitSample(t *testing.T, url, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got map[string]float64
	for time.Now().Before(deadline) {
		got = testtools.ScrapeMetrics(t, url)
		if v, ok := got[sample]; ok && v == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s = %v after 5s, want %v; /metrics has %v", sample, got[sample], want, keys(got))
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
			waitSample(t, srv.URL, "hangup_telemetry_spans_dropped_total{where="+tc.where+"}", float64(tc.dropped))
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
	steps := []struct {
		name     string
		at       time.Duration // after t0
		drop     Drops         // added before warn
		wantWarn string        // "" for no warning
	}{
		{name: "nothing dropped", at: 0},
		{name: "first drop warns at once", at: time.Second, drop: Drops{ExportQueue: 3},
			wantWarn: "span_queue=0 export_queue=3 export=0 total=3"},
		{name: "more within the interval wait", at: 5 * time.Second, drop: Drops{SpanQueue: 2}},
		{name: "still within", at: 10*time.Second + time.Second - 1, drop: Drops{Export: 1}},
		{name: "after the interval, the counts since", at: 11 * time.Second,
			wantWarn: "span_queue=2 export_queue=0 export=1 total=6"},
		{name: "nothing new, no warning", at: 30 * time.Second},
		{name: "new drop after quiet warns at once", at: 31 * time.Second, drop: Drops{Export: 5},
			wantWarn: "span_queue=0 export_queue=0 export=5 total=11"},
	}
	var logs lockedBuffer
	c := newDropCounter(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
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

// TestBatchFromEnv: the batch span processor's sizes come from the
// standard variables, with a clear error for a bad value.
func TestBatchFromEnv(t *testing.T) {
	tests := []struct {
		name         string
		queue, batch string
		want         batchSizes
		wantErr      string
	}{
		{name: "defaults", want: batchSizes{queue: defaultBSPQueue, batch: defaultBSPBatch}},
		{name: "both set", queue: "100", batch: "10", want: batchSizes{queue: 100, batch: 10}},
		{name: "batch cut to the queue", queue: "100", batch: "1000", want: batchSizes{queue: 100, batch: 100}},
		{name: "not a number", queue: "lots", wantErr: `OTEL_BSP_MAX_QUEUE_SIZE="lots": want a positive number`},
		{name: "zero batch", batch: "0", wantErr: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE="0": want a positive number`},
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
