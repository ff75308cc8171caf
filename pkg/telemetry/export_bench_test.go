//go:build unix

package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hangup-dev/hangup/pkg/event"
)

// BenchmarkStreamExport measures a traced unary call's whole span cost, as
// the sidecar pays it with tracing always on: the relay goroutine's start
// and traceparent, the background goroutine's end, the batch span processor
// and the OTLP/HTTP export (marshalling, gzip when configured, the POST) to
// a receiver on 127.0.0.1, flushed inside the timed loop. cpu-µs/stream is
// the process's CPU time (every goroutine, the receiver's reads included)
// per stream; allocs/op counts every goroutine's allocations. The receiver
// counts the exported spans without decoding them (its cost stays small next
// to the sidecar's), so a span the SDK dropped fails the benchmark instead
// of making it look cheaper.
func BenchmarkStreamExport(b *testing.B) {
	var spans atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		var n int
		if err == nil {
			n, err = countSpans(body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spans.Add(int64(n))
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	clearOTelEnv(b)
	b.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	b.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	// The span goroutine's queue and the batch span processor's (2048 by
	// default) hold every span, so that none is dropped when the loop
	// outruns them: a fixed span queue of 65,536 dropped spans once b.N
	// passed about 350,000.
	b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", strconv.Itoa(b.N+2))
	tel, err := Setup(context.Background(), Options{SpanQueue: max(1<<16, b.N+2)})
	if err != nil {
		b.Fatal(err)
	}
	tr := tel.Tracer()
	conn := tr.StartConn(ConnStart{Peer: "127.0.0.1:1234"})
	cpu0 := cpuTime(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		now := time.Now()
		s := conn.StartStream(StreamStart{Traceparent: clientTraceparent, Method: "/echo.v1.Echo/Unary", Authority: "echo:50051", StreamID: 1, Start: now})
		_ = s.Traceparent()
		s.End(StreamEnd{At: now, HasGRPCStatus: true})
	}
	conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
	if err := tel.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/stream")
	if got := spans.Load(); got != int64(b.N)+1 {
		b.Fatalf("receiver got %d spans, want %d stream spans and a connection span (dropped by the span queue: %d)", got, b.N, tr.Dropped())
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countSpans counts the spans in an encoded ExportTraceServiceRequest
// (resource_spans = 1, its scope_spans = 2, their spans = 2) without
// decoding them.
func countSpans(b []byte) (int, error) {
	var n int
	err := eachField(b, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with the bytes of every length-delimited field num in
// the encoded message b.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(l))
		}
		b = b[l:]
		if typ == protowire.BytesType && n == num {
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
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return fmt.Errorf("field %d: %w", n, protowire.ParseError(l))
		}
		b = b[l:]
	}
	return nil
}
