package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// otlpExporter sends spans over OTLP like the SDK's otlptrace exporter, with
// the same clients (otlptracegrpc's or otlptracehttp's, configured by the
// OTEL_EXPORTER_OTLP_* variables, with their retries, TLS, headers and
// compression), but encodes each span straight into protobuf bytes.
//
// Why: with tracing always on, the SDK exporter's conversion of every span
// into OTLP structs (tracetransform: about 28 allocations per stream span,
// 70% of the sidecar's allocations) and their reflective marshalling
// (proto.Size and MarshalAppend) took 38% of the sidecar's CPU under
// saturated unary load, more than the relay itself, and most of the
// garbage collector's work. Here a batch is appended to one reused buffer.
//
// The bytes travel as the unknown fields of an otherwise empty
// tracepb.ResourceSpans, which protobuf marshals verbatim: the receiver
// reads a normal ResourceSpans. (The clients' experimental
// OTEL_GO_X_OBSERVABILITY span counts, which look into the structs, see
// none.)
type otlpExporter struct {
	client otlptrace.Client

	// maxBytes is the most bytes a request's spans may encode to; 0 means
	// maxRequestEncodedSize (tests lower it).
	maxBytes int

	mu  sync.Mutex // guards buf; held during an export
	buf []byte
}

// newOTLPExporter returns the OTLP exporter for the protocol that
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL names
// (grpc or http/protobuf, the default), as autoexport would pick it.
func newOTLPExporter(ctx context.Context) (*otlpExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var c otlptrace.Client
	switch proto {
	case "grpc":
		c = otlptracegrpc.NewClient()
	case "", "http/protobuf":
		c = otlptracehttp.NewClient()
	default:
		return nil, fmt.Errorf("OTLP protocol %q (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL): want grpc or http/protobuf", proto)
	}
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start the OTLP client: %w", err)
	}
	return &otlpExporter{client: c}, nil
}

// ExportSpans encodes spans and uploads them in one request; a batch with
// no span (nil ones aside) uploads nothing, as the SDK's exporter. A batch
// that encodes to more than protobuf allows in a message is not sent: the
// error says so.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	groups := groupSpans(spans)
	if len(groups) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rss := make([]*tracepb.ResourceSpans, 0, len(groups))
	e.buf = e.buf[:0]
	for _, g := range groups {
		start := len(e.buf)
		e.buf = appendResourceSpans(e.buf, g)
		rs := &tracepb.ResourceSpans{}
		rs.ProtoReflect().SetUnknown(protoreflect.RawFields(e.buf[start:len(e.buf):len(e.buf)]))
		rss = append(rss, rs)
	}
	if limit := cmp.Or(e.maxBytes, maxRequestEncodedSize); len(e.buf) > limit {
		n := len(e.buf)
		e.buf = nil // not kept for the next batch
		return fmt.Errorf("traces export: %w: %d spans encode to %d bytes, over %d", errRequestTooLong, len(spans), n, limit)
	}
	if err := e.client.UploadTraces(ctx, rss); err != nil {
		return fmt.Errorf("traces export: %w", err)
	}
	return nil
}

// Shutdown stops the client, flushing nothing: the batch span processor
// exported what it held before.
func (e *otlpExporter) Shutdown(ctx context.Context) error {
	if err := e.client.Stop(ctx); err != nil {
		return fmt.Errorf("stop the OTLP client: %w", err)
	}
	return nil
}

// spanGroup is the spans of one resource, by instrumentation scope, in the
// order they came.
type spanGroup struct {
	res    *resource.Resource
	scopes []scopeGroup
}

type scopeGroup struct {
	scope instrumentation.Scope
	spans []sdktrace.ReadOnlySpan
}

// groupSpans groups spans by resource and scope, as OTLP nests them. A
// batch of hangup's spans is one group: one provider, one tracer.
func groupSpans(spans []sdktrace.ReadOnlySpan) []spanGroup {
	var groups []spanGroup
	for _, s := range spans {
		if s == nil {
			continue
		}
		res, scope := s.Resource(), s.InstrumentationScope()
		gi := -1
		for i := range groups {
			if groups[i].res == res || groups[i].res.Equivalent() == res.Equivalent() {
				gi = i
				break
			}
		}
		if gi < 0 {
			groups = append(groups, spanGroup{res: res})
			gi = len(groups) - 1
		}
		g := &groups[gi]
		si := -1
		for i := range g.scopes {
			if g.scopes[i].scope == scope {
				si = i
				break
			}
		}
		if si < 0 {
			g.scopes = append(g.scopes, scopeGroup{scope: scope})
			si = len(g.scopes) - 1
		}
		g.scopes[si].spans = append(g.scopes[si].spans, s)
	}
	return groups
}

// Field numbers of opentelemetry/proto/trace/v1/trace.proto,
// common/v1/common.proto and resource/v1/resource.proto.
const (
	fResourceSpansResource  = 1
	fResourceSpansScope     = 2
	fResourceSpansSchemaURL = 3

	fResourceAttributes = 1

	fScopeSpansScope     = 1
	fScopeSpansSpans     = 2
	fScopeSpansSchemaURL = 3

	fScopeName       = 1
	fScopeVersion    = 2
	fScopeAttributes = 3

	fSpanTraceID          = 1
	fSpanSpanID           = 2
	fSpanTraceState       = 3
	fSpanParentSpanID     = 4
	fSpanName             = 5
	fSpanKind             = 6
	fSpanStart            = 7
	fSpanEnd              = 8
	fSpanAttributes       = 9
	fSpanDroppedAttrs     = 10
	fSpanEvents           = 11
	fSpanDroppedEvents    = 12
	fSpanLinks            = 13
	fSpanDroppedLinks     = 14
	fSpanStatus           = 15
	fSpanFlags            = 16
	fEventTime            = 1
	fEventName            = 2
	fEventAttributes      = 3
	fEventDroppedAttrs    = 4
	fLinkTraceID          = 1
	fLinkSpanID           = 2
	fLinkAttributes       = 4
	fLinkDroppedAttrs     = 5
	fLinkFlags            = 6
	fStatusMessage        = 2
	fStatusCode           = 3
	fKeyValueKey          = 1
	fKeyValueValue        = 2
	fAnyString            = 1
	fAnyBool              = 2
	fAnyInt               = 3
	fAnyDouble            = 4
	fAnyArray             = 5
	fAnyKvlist            = 6
	fAnyBytes             = 7
	fArrayValues          = 1
	fKeyValueListValues   = 1
	maxLenVarint          = 5             // room reserved for a nested message's length
	maxRequestEncodedSize = math.MaxInt32 // protobuf's limit on a message; see appendNested
)

// errRequestTooLong is ExportSpans' error for a batch over maxRequestEncodedSize.
var errRequestTooLong = errors.New("OTLP request too long")

// appendNested appends field num as a nested message whose bytes f
// appends. The length goes in front once known: room for the longest is
// reserved and the message moved back over what was not needed.
//
// Every nested message lies within its batch's bytes, which ExportSpans
// sends only when within maxRequestEncodedSize (2 GiB - 1): then every
// length fits the room (5 bytes hold up to 32 GiB - 1). So no check here
// costs the encoding anything; a message the room cannot hold is left out,
// and its batch, longer still, refused.
func appendNested(b []byte, num protowire.Number, f func([]byte) []byte) []byte {
	field := len(b)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0, 0, 0, 0, 0)
	b = f(b)
	n := len(b) - at - maxLenVarint
	sz := protowire.SizeVarint(uint64(n))
	if sz > maxLenVarint {
		return b[:field]
	}
	protowire.AppendVarint(b[:at], uint64(n))
	copy(b[at+sz:], b[at+maxLenVarint:])
	return b[:len(b)-(maxLenVarint-sz)]
}

// appendString appends a string field. Protobuf strings must be UTF-8, and
// a collector refuses a whole request holding one that is not, so each
// invalid sequence in s (a client's :path, :authority or GOAWAY debug data
// can hold any bytes) is sent as U+FFFD. A valid s, nearly always, costs
// only the check: it is appended as it is, with no copy.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if !isASCII(s) {
		return appendNonASCIIString(b, num, s)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendNonASCIIString is appendString's rare path, apart so that the
// common one stays small.
func appendNonASCIIString(b []byte, num protowire.Number, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// isASCII reports whether s is all ASCII, so valid UTF-8: the answer for
// nearly every string appendString gets, found 8 bytes at a time. (With
// utf8.ValidString alone, which goes byte by byte after its first 8, the
// check took a fifth of a stream span's encoding instructions.)
func isASCII(s string) bool {
	if len(s) < 8 {
		var or byte
		for i := range len(s) {
			or |= s[i]
		}
		return or < utf8.RuneSelf
	}
	var or uint64
	for i := 0; i+8 < len(s); i += 8 {
		or |= le64(s[i:])
	}
	or |= le64(s[len(s)-8:]) // the last 8 bytes, some of them again
	return or&0x8080808080808080 == 0
}

// le64 is s's first 8 bytes as a little-endian uint64, which the compiler
// turns into one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32Field(b []byte, num protowire.Number, v uint32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// The append functions below write what proto.Marshal writes for the
// structs the SDK's tracetransform builds: proto3 fields at their zero
// value are left out, oneof members and set messages never.

func appendResourceSpans(b []byte, g spanGroup) []byte {
	if g.res != nil {
		b = appendNested(b, fResourceSpansResource, func(b []byte) []byte {
			for it := g.res.Iter(); it.Next(); {
				b = appendKeyValue(b, fResourceAttributes, it.Attribute())
			}
			return b
		})
	}
	for _, sg := range g.scopes {
		b = appendNested(b, fResourceSpansScope, func(b []byte) []byte { return appendScopeSpans(b, sg) })
	}
	if u := g.res.SchemaURL(); u != "" {
		b = appendString(b, fResourceSpansSchemaURL, u)
	}
	return b
}

func appendScopeSpans(b []byte, sg scopeGroup) []byte {
	if sc := sg.scope; sc != (instrumentation.Scope{}) {
		b = appendNested(b, fScopeSpansScope, func(b []byte) []byte {
			if sc.Name != "" {
				b = appendString(b, fScopeName, sc.Name)
			}
			if sc.Version != "" {
				b = appendString(b, fScopeVersion, sc.Version)
			}
			for it := sc.Attributes.Iter(); it.Next(); {
				b = appendKeyValue(b, fScopeAttributes, it.Attribute())
			}
			return b
		})
	}
	for _, s := range sg.spans {
		b = appendNested(b, fScopeSpansSpans, func(b []byte) []byte { return appendSpan(b, s) })
	}
	if sg.scope.SchemaURL != "" {
		b = appendString(b, fScopeSpansSchemaURL, sg.scope.SchemaURL)
	}
	return b
}

func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	if ts := sc.TraceState().String(); ts != "" {
		b = appendString(b, fSpanTraceState, ts)
	}
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, fSpanParentSpanID, psid[:])
	}
	if n := s.Name(); n != "" {
		b = appendString(b, fSpanName, n)
	}
	if k := otlpSpanKind(s.SpanKind()); k != 0 {
		b = appendVarintField(b, fSpanKind, uint64(k))
	}
	if t := unixNano(s.StartTime().UnixNano()); t != 0 {
		b = appendFixed64Field(b, fSpanStart, t)
	}
	if t := unixNano(s.EndTime().UnixNano()); t != 0 {
		b = appendFixed64Field(b, fSpanEnd, t)
	}
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	if n := clampUint32(s.DroppedAttributes()); n != 0 {
		b = appendVarintField(b, fSpanDroppedAttrs, uint64(n))
	}
	for _, ev := range s.Events() {
		b = appendNested(b, fSpanEvents, func(b []byte) []byte {
			if t := unixNano(ev.Time.UnixNano()); t != 0 {
				b = appendFixed64Field(b, fEventTime, t)
			}
			if ev.Name != "" {
				b = appendString(b, fEventName, ev.Name)
			}
			for _, kv := range ev.Attributes {
				b = appendKeyValue(b, fEventAttributes, kv)
			}
			if n := clampUint32(ev.DroppedAttributeCount); n != 0 {
				b = appendVarintField(b, fEventDroppedAttrs, uint64(n))
			}
			return b
		})
	}
	if n := clampUint32(s.DroppedEvents()); n != 0 {
		b = appendVarintField(b, fSpanDroppedEvents, uint64(n))
	}
	for _, l := range s.Links() {
		b = appendNested(b, fSpanLinks, func(b []byte) []byte {
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			b = appendBytes(b, fLinkTraceID, ltid[:])
			b = appendBytes(b, fLinkSpanID, lsid[:])
			for _, kv := range l.Attributes {
				b = appendKeyValue(b, fLinkAttributes, kv)
			}
			if n := clampUint32(l.DroppedAttributeCount); n != 0 {
				b = appendVarintField(b, fLinkDroppedAttrs, uint64(n))
			}
			return appendFixed32Field(b, fLinkFlags, otlpFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		})
	}
	if n := clampUint32(s.DroppedLinks()); n != 0 {
		b = appendVarintField(b, fSpanDroppedLinks, uint64(n))
	}
	st := s.Status()
	b = appendNested(b, fSpanStatus, func(b []byte) []byte {
		if st.Description != "" {
			b = appendString(b, fStatusMessage, st.Description)
		}
		if c := otlpStatusCode(st.Code); c != 0 {
			b = appendVarintField(b, fStatusCode, uint64(c))
		}
		return b
	})
	return appendFixed32Field(b, fSpanFlags, otlpFlags(sc.TraceFlags(), parent))
}

// appendKeyValue appends kv as a KeyValue field. A string, int, float or
// bool value with an ASCII key (and, for a string, an ASCII value), which is
// nearly every attribute, is sized first and written in one pass; the rest
// go through appendNested, which moves each nested message back over the
// room it reserved for its length (twice per attribute, a third of a stream
// span's encoding before).
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	var valueLen int // the AnyValue's bytes; every field number in it takes a one-byte tag
	switch kv.Value.Type() {
	case attribute.STRING:
		s := kv.Value.AsString()
		if !isASCII(s) {
			return appendKeyValueNested(b, num, kv) // repaired, its length is not len(s)
		}
		valueLen = 1 + protowire.SizeBytes(len(s))
	case attribute.INT64:
		valueLen = 1 + protowire.SizeVarint(uint64(kv.Value.AsInt64()))
	case attribute.FLOAT64:
		valueLen = 1 + 8
	case attribute.BOOL:
		valueLen = 1 + 1
	default:
		return appendKeyValueNested(b, num, kv)
	}
	keyLen := 0
	if kv.Key != "" {
		if !isASCII(string(kv.Key)) {
			return appendKeyValueNested(b, num, kv)
		}
		keyLen = 1 + protowire.SizeBytes(len(kv.Key))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(keyLen+1+protowire.SizeBytes(valueLen)))
	if kv.Key != "" {
		b = protowire.AppendTag(b, fKeyValueKey, protowire.BytesType)
		b = protowire.AppendString(b, string(kv.Key))
	}
	b = protowire.AppendTag(b, fKeyValueValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(valueLen))
	return appendAnyValue(b, kv.Value)
}

// appendKeyValueNested is appendKeyValue for any value.
func appendKeyValueNested(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	return appendNested(b, num, func(b []byte) []byte {
		if kv.Key != "" {
			b = appendString(b, fKeyValueKey, string(kv.Key))
		}
		return appendNested(b, fKeyValueValue, func(b []byte) []byte { return appendAnyValue(b, kv.Value) })
	})
}

// appendAnyValue appends the fields of an AnyValue holding v.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return appendVarintField(b, fAnyBool, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		return appendVarintField(b, fAnyInt, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return appendFixed64Field(b, fAnyDouble, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return appendString(b, fAnyString, v.AsString())
	case attribute.BYTESLICE:
		return appendBytes(b, fAnyBytes, v.AsByteSlice())
	case attribute.BOOLSLICE:
		return appendArray(b, v.AsBoolSlice(), func(b []byte, x bool) []byte {
			return appendVarintField(b, fAnyBool, protowire.EncodeBool(x))
		})
	case attribute.INT64SLICE:
		return appendArray(b, v.AsInt64Slice(), func(b []byte, x int64) []byte { return appendVarintField(b, fAnyInt, uint64(x)) })
	case attribute.FLOAT64SLICE:
		return appendArray(b, v.AsFloat64Slice(), func(b []byte, x float64) []byte {
			return appendFixed64Field(b, fAnyDouble, math.Float64bits(x))
		})
	case attribute.STRINGSLICE:
		return appendArray(b, v.AsStringSlice(), func(b []byte, x string) []byte { return appendString(b, fAnyString, x) })
	case attribute.SLICE:
		return appendArray(b, v.AsSlice(), appendAnyValue)
	case attribute.MAP:
		return appendNested(b, fAnyKvlist, func(b []byte) []byte {
			for _, kv := range v.AsMap() {
				b = appendKeyValue(b, fKeyValueListValues, kv)
			}
			return b
		})
	case attribute.EMPTY:
		return b
	default:
		return appendString(b, fAnyString, "INVALID")
	}
}

// appendArray appends an ArrayValue of xs, each an AnyValue that f fills.
func appendArray[T any](b []byte, xs []T, f func([]byte, T) []byte) []byte {
	return appendNested(b, fAnyArray, func(b []byte) []byte {
		for _, x := range xs {
			b = appendNested(b, fArrayValues, func(b []byte) []byte { return f(b, x) })
		}
		return b
	})
}

func unixNano(n int64) uint64 { return uint64(max(0, n)) }

func clampUint32(v int) uint32 {
	if v < 0 {
		return 0
	}
	return uint32(min(int64(v), math.MaxUint32))
}

// otlpFlags are a span's or link's OTLP flags: the W3C trace flags, and
// whether the parent (or the linked span) is remote.
func otlpFlags(tf trace.TraceFlags, sc trace.SpanContext) uint32 {
	f := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if sc.IsRemote() {
		f |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return f
}

func otlpSpanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func otlpStatusCode(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}
