package telemetry

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// recorder makes hangup's spans in place of the SDK's TracerProvider and
// hands each ended one to the span processor, as the SDK would.
//
// Why: with every stream traced, the SDK's spans cost about 4.6 µs and 20
// allocations (2.3 KB) per stream on the relay's goroutines and the
// Tracer's, most of it the SDK's general span (a mutex, option closures,
// an attribute map at every End, a snapshot copy at End) for spans whose
// shape hangup fixes. A recorded span here is one spanData, allocated only
// when the span is sampled, and handed to the processor as it is:
// it is the sdktrace.ReadOnlySpan the batch span processor and the
// exporter read.
//
// What it keeps of the SDK: the samplers (sdktrace.Sampler, picked from
// OTEL_TRACES_SAMPLER by samplerFromEnv as the SDK would), the span
// processor and the exporters. What it leaves out: OnStart (processors get
// OnEnd only; the batch span processor does nothing at start), the
// OTEL_SPAN_*_LIMIT and OTEL_ATTRIBUTE_*_LIMIT variables (hangup's spans
// have at most 10 attributes and an event per frame that ends them; events
// are capped at maxSpanEvents), and a RecordOnly sampling decision, which
// no sampler OTEL_TRACES_SAMPLER names returns and nothing would export,
// is taken as Drop.
type recorder struct {
	res     *resource.Resource
	scope   instrumentation.Scope
	sampler sdktrace.Sampler
	ids     sdktrace.IDGenerator // randomIDs, but for tests
	proc    sdktrace.SpanProcessor
}

// newRecorder returns a recorder of spans of res, in hangup's
// instrumentation scope, sampled by sampler, with random ids, handed to
// proc as they end.
func newRecorder(res *resource.Resource, sampler sdktrace.Sampler, proc sdktrace.SpanProcessor) *recorder {
	return &recorder{res: res, scope: instrumentation.Scope{Name: instrumentationName}, sampler: sampler, ids: randomIDs{}, proc: proc}
}

// maxSpanEvents bounds a span's events, as the SDK's default
// OTEL_SPAN_EVENT_COUNT_LIMIT does: a client that sends GOAWAY after
// GOAWAY must not grow its connection span without end. Unlike the SDK,
// which evicts the oldest, the first events are kept (the first GOAWAY is
// the one that ended things) and the rest counted as dropped.
const maxSpanEvents = 128

// spanAttrs is how many attributes a span holds without another
// allocation: the most any of hangup's spans has (a stream span: rpc.*
// three, server.address, network.peer.* two, http2.stream_id, the gRPC
// status and hangup.disconnect.* two).
const spanAttrs = 10

// spanData is one span as the recorder keeps it. Until it ends, only the
// goroutine that started it (up to the start's return) and then the
// Tracer's goroutine touch it; once ended it is read-only, read by the
// span processor and the exporter.
type spanData struct {
	// ReadOnlySpan is always nil: it is embedded for the interface's
	// unexported method only, as the SDK's tracetest does for its
	// snapshots. spanData defines every exported method.
	sdktrace.ReadOnlySpan

	r          *recorder
	name       string
	kind       trace.SpanKind
	sc, parent trace.SpanContext
	start, end time.Time
	attrs      []attribute.KeyValue
	events     []sdktrace.Event
	links      []sdktrace.Link // shared read-only (a connection's streams share one)
	status     sdktrace.Status
	dropped    int // events over maxSpanEvents
	ended      bool
	attrBuf    [spanAttrs]attribute.KeyValue // attrs' first backing array
}

// start starts a span whose parent is the span context in ctx (a remote
// one, from a traceparent) or, when there is none, the root of a new
// trace. It returns the span's context and, when it was sampled, its
// record; an unsampled span has only its ids and flags, to propagate, and
// costs no allocation.
func (r *recorder) start(ctx context.Context, name string, kind trace.SpanKind, at time.Time, links []sdktrace.Link) (*spanData, trace.SpanContext) {
	parent := trace.SpanContextFromContext(ctx)
	var tid trace.TraceID
	var sid trace.SpanID
	if parent.IsValid() {
		tid = parent.TraceID()
		sid = r.ids.NewSpanID(ctx, tid)
	} else {
		tid, sid = r.ids.NewIDs(ctx)
	}
	res := r.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name, Kind: kind})
	sampled := res.Decision == sdktrace.RecordAndSample
	flags := parent.TraceFlags().WithSampled(sampled)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: res.Tracestate})
	if !sampled {
		return nil, sc
	}
	d := &spanData{r: r, name: name, kind: kind, sc: sc, parent: parent, start: at, links: links}
	d.attrs = d.attrBuf[:0]
	return d, sc
}

// setAttrs sets kvs on d, replacing an attribute of the same key (the last
// value wins, as with the SDK's SetAttributes).
func (d *spanData) setAttrs(kvs ...attribute.KeyValue) {
	had := len(d.attrs)
next:
	for _, kv := range kvs {
		for i := range d.attrs[:had] {
			if d.attrs[i].Key == kv.Key {
				d.attrs[i] = kv
				continue next
			}
		}
		d.attrs = append(d.attrs, kv)
	}
}

// addEvent adds e, or counts it as dropped once d has maxSpanEvents.
func (d *spanData) addEvent(e sdktrace.Event) {
	if len(d.events) >= maxSpanEvents {
		d.dropped++
		return
	}
	d.events = append(d.events, e)
}

// finish ends d at at and hands it to the span processor. d must not
// change afterwards.
func (d *spanData) finish(at time.Time) {
	d.end, d.ended = at, true
	d.r.proc.OnEnd(d)
}

// randomIDs makes random, valid ids. math/rand/v2's top-level functions
// draw from the runtime's per-thread ChaCha8 source: no lock, unlike the
// SDK's generator.
type randomIDs struct{}

func (randomIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return newTraceID(), newSpanID()
}

func (randomIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newTraceID() trace.TraceID {
	for {
		var id trace.TraceID
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
		if id.IsValid() {
			return id
		}
	}
}

func newSpanID() trace.SpanID {
	for {
		var id trace.SpanID
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
		if id.IsValid() {
			return id
		}
	}
}

func (d *spanData) Name() string                                { return d.name }
func (d *spanData) SpanContext() trace.SpanContext              { return d.sc }
func (d *spanData) Parent() trace.SpanContext                   { return d.parent }
func (d *spanData) SpanKind() trace.SpanKind                    { return d.kind }
func (d *spanData) StartTime() time.Time                        { return d.start }
func (d *spanData) EndTime() time.Time                          { return d.end }
func (d *spanData) Attributes() []attribute.KeyValue            { return d.attrs }
func (d *spanData) Links() []sdktrace.Link                      { return d.links }
func (d *spanData) Events() []sdktrace.Event                    { return d.events }
func (d *spanData) Status() sdktrace.Status                     { return d.status }
func (d *spanData) Resource() *resource.Resource                { return d.r.res }
func (d *spanData) DroppedAttributes() int                      { return 0 }
func (d *spanData) DroppedLinks() int                           { return 0 }
func (d *spanData) DroppedEvents() int                          { return d.dropped }
func (d *spanData) ChildSpanCount() int                         { return 0 } // the SDK counts local children only; hangup's parents are remote
func (d *spanData) InstrumentationScope() instrumentation.Scope { return d.r.scope }

// InstrumentationLibrary is InstrumentationScope.
//
// Deprecated: the interface still has it; use InstrumentationScope.
func (d *spanData) InstrumentationLibrary() instrumentation.Library { return d.r.scope }

// The OTEL_TRACES_SAMPLER values samplerFromEnv knows: the SDK's.
var envSamplers = []string{
	"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK's TracerProvider picks it:
// parentbased_always_on when unset, a ratio of 1 when a ratio sampler has
// no argument. Stricter than the SDK, which logs an unknown sampler or a
// bad ratio and samples everything, it returns an error: a sidecar that
// would export ten times the spans it was told to refuses to start
// instead, as with OTEL_BSP_* (batchFromEnv).
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q for %s: want a ratio from 0 to 1, e.g. 0.1", arg, name)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		s, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(s), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q: want one of %s (default parentbased_always_on)",
		name, strings.Join(envSamplers, ", "))
}
