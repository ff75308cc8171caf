package telemetry

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// One dropCounter per Telemetry, shared with atomics by the goroutines
// that lose spans (see the top of trace.go for who runs what), each
// counting where it loses them:
//
//   - the relay's goroutines (and pkg/notify's): span_queue, in
//     Tracer.send;
//   - the Tracer's goroutine: export_queue, in countedProcessor.OnEnd,
//     which the recorder calls as that goroutine ends a span; it calls
//     warn after every op;
//   - the batch span processor's goroutine: export, in
//     countedExporter.ExportSpans, the exporter's one caller; it calls
//     warn after every export.
//
// /metrics reads the counts (Tracer.Drops). countedProcessor and
// countedExporter belong to Telemetry: Setup builds them (spanProcessor),
// Telemetry.Shutdown flushes and stops them once the Tracer has stopped.

// Where a span, or a change to one, can be lost on its way to the
// exporter: the values of the where attribute of
// hangup.telemetry.spans.dropped.
const (
	// DropSpanQueue: the Tracer's queue of span changes (Options.SpanQueue)
	// was full, or tracing had stopped. A dropped end loses its span, a
	// dropped event or attribute change only that change.
	DropSpanQueue = "span_queue"
	// DropExportQueue: the batch span processor's queue
	// (OTEL_BSP_MAX_QUEUE_SIZE) was full; the span is lost.
	DropExportQueue = "export_queue"
	// DropExport: the exporter returned an error for a batch (the
	// collector was unreachable or refused it); its spans are lost. When
	// the collector took the batch but rejected some of its spans (an OTLP
	// partial success), only those are lost.
	DropExport = "export"
)

// dropWarnEvery is the least time between two "spans dropped" warnings.
const dropWarnEvery = 10 * time.Second

// Drops counts what was lost, by where (see DropSpanQueue and the others).
type Drops struct {
	SpanQueue, ExportQueue, Export uint64
}

// Total is the sum of the counts.
func (d Drops) Total() uint64 { return d.SpanQueue + d.ExportQueue + d.Export }

func (d Drops) sub(e Drops) Drops {
	return Drops{d.SpanQueue - e.SpanQueue, d.ExportQueue - e.ExportQueue, d.Export - e.Export}
}

// dropCounter counts lost spans and span changes where they are lost, for
// hangup.telemetry.spans.dropped, and warns in the log about them at most
// once per dropWarnEvery: never silently, and without a log line per span
// when a collector is down.
type dropCounter struct {
	// immutable
	log *slog.Logger
	now func() time.Time // injected by tests

	// atomic
	spanQueue, exportQueue, export atomic.Uint64
	warnedTotal                    atomic.Uint64 // Total() at the last warning
	// nextWarn is the earliest time of the next warning, in Unix
	// nanoseconds: the caller of warn whose CompareAndSwap moves it on by
	// dropWarnEvery is the one that writes the warning, so that a drop
	// within the interval costs atomic loads, no lock.
	nextWarn atomic.Int64

	// mu is taken only by the caller that won nextWarn, once per warning.
	mu     sync.Mutex
	warned Drops // guarded by mu: the counts at the last warning
}

// newDropCounter returns a drop counter that warns to log; nil discards
// the warnings.
func newDropCounter(log *slog.Logger) *dropCounter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &dropCounter{log: log, now: time.Now}
}

func (c *dropCounter) load() Drops {
	return Drops{SpanQueue: c.spanQueue.Load(), ExportQueue: c.exportQueue.Load(), Export: c.export.Load()}
}

// warn logs the drops since the last warning, unless there are none or the
// last warning is less than dropWarnEvery old. It costs an atomic load or
// two when nothing was dropped, and a clock read more within the interval,
// so it may be called after every span, from any goroutine.
func (c *dropCounter) warn() {
	if c.spanQueue.Load()+c.exportQueue.Load()+c.export.Load() == c.warnedTotal.Load() {
		return
	}
	next, now := c.nextWarn.Load(), c.now().UnixNano()
	if now < next {
		return
	}
	claimed := now + int64(dropWarnEvery)
	if !c.nextWarn.CompareAndSwap(next, claimed) {
		return // another caller writes this warning
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.load()
	n := d.sub(c.warned)
	if n.Total() == 0 {
		// The warning just written by the last winner had them: give
		// the interval back, so that the next drop is told at once.
		c.nextWarn.CompareAndSwap(claimed, next)
		return
	}
	c.log.Warn("spans dropped: traces are incomplete",
		DropSpanQueue, n.SpanQueue, DropExportQueue, n.ExportQueue, DropExport, n.Export,
		"total", d.Total(), "hint", dropHint(n))
	c.warned = d
	c.warnedTotal.Store(d.Total())
}

// dropHint says what to do about the largest of n's counts.
func dropHint(n Drops) string {
	switch {
	case n.Export >= n.SpanQueue && n.Export >= n.ExportQueue:
		return "the export failed or the collector rejected spans: check the collector at OTEL_EXPORTER_OTLP_ENDPOINT and its log"
	case n.ExportQueue >= n.SpanQueue:
		return "more spans than the exporter sends: raise OTEL_BSP_MAX_QUEUE_SIZE or sample fewer (OTEL_TRACES_SAMPLER)"
	default:
		return "the span goroutine fell behind: sample fewer (OTEL_TRACES_SAMPLER)"
	}
}

// countedProcessor is a batch span processor whose drops are counted. The
// SDK's drops a span silently when its queue is full, so countedProcessor
// keeps the count of spans it handed over and whose export has not
// returned yet, and hands over a span only while that count is below the
// processor's queue size: the SDK's queue (which holds fewer) never
// overflows, and a span beyond it is counted as dropped here (where
// export_queue). It relies on nothing else putting spans into the queue:
// ForceFlush, which also does, is not used.
type countedProcessor struct {
	sdktrace.SpanProcessor
	max   int64 // the processor's queue size
	held  atomic.Int64
	drops *dropCounter
}

// newCountedProcessor wraps exp in a batch span processor with the given
// options, queue (its MaxQueueSize) among them.
func newCountedProcessor(exp sdktrace.SpanExporter, queue int, drops *dropCounter, opts ...sdktrace.BatchSpanProcessorOption) *countedProcessor {
	p := &countedProcessor{max: int64(queue), drops: drops}
	p.SpanProcessor = sdktrace.NewBatchSpanProcessor(&countedExporter{SpanExporter: exp, p: p},
		append(opts, sdktrace.WithMaxQueueSize(queue))...)
	return p
}

// OnEnd hands s to the batch span processor, or counts it as dropped.
func (p *countedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return // the batch span processor ignores it too
	}
	if p.held.Add(1) > p.max {
		p.held.Add(-1)
		p.drops.exportQueue.Add(1)
		return
	}
	p.SpanProcessor.OnEnd(s)
}

// countedExporter counts the spans of each finished export out of its
// processor, and those a failed one lost as dropped (where export).
type countedExporter struct {
	sdktrace.SpanExporter
	p *countedProcessor
}

func (e *countedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	e.p.held.Add(-int64(len(spans)))
	if lost := exportLost(err, len(spans)); lost > 0 {
		e.p.drops.export.Add(lost)
	}
	e.p.drops.warn()
	return err
}

// exportLost is how many of an export's n spans its error err lost: none
// for nil; for an OTLP partial success only (the collector took the batch
// but rejected some of its spans, or merely warned), the spans rejected;
// all n for any other error, alone or joined to a partial success (with
// gRPC a failed call can carry both).
func exportLost(err error, n int) uint64 {
	if err == nil {
		return 0
	}
	rejected, ok := partialRejected(err)
	if !ok {
		return uint64(n)
	}
	return min(rejected, uint64(n))
}

// partialRejected walks err's tree (the exporters wrap and join errors) and
// returns the spans its OTLP partial successes rejected, and whether every
// error in it other than a wrapper is one.
func partialRejected(err error) (uint64, bool) {
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		if inner := e.Unwrap(); inner != nil {
			return partialRejected(inner)
		}
	case interface{ Unwrap() []error }:
		inner := e.Unwrap()
		var sum uint64
		for _, ie := range inner {
			n, ok := partialRejected(ie)
			if !ok {
				return 0, false
			}
			sum += n
		}
		return sum, len(inner) > 0
	}
	return parsePartialSuccess(err.Error())
}

// The text of the OTLP clients' partial-success error,
// "OTLP partial success: <collector's message> (<n> spans rejected)".
const (
	partialSuccessPrefix = "OTLP partial success: "
	partialSuccessSuffix = " spans rejected)"
)

// parsePartialSuccess returns the count of spans a partial-success error's
// text msg gives, and whether msg is one. The error's type,
// PartialSuccess, is internal to otlptracehttp and otlptracegrpc (each has
// its own copy), so its text is what is read: the count is in the last
// parenthesis, after the collector's message, which may hold anything,
// parentheses included.
func parsePartialSuccess(msg string) (uint64, bool) {
	if !strings.HasPrefix(msg, partialSuccessPrefix) || !strings.HasSuffix(msg, partialSuccessSuffix) {
		return 0, false
	}
	msg = strings.TrimSuffix(msg, partialSuccessSuffix)
	i := strings.LastIndex(msg, " (")
	if i < len(partialSuccessPrefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(msg[i+len(" ("):], 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
