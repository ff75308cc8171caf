package telemetry

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/pkg/event"
)

// Who runs what, from a span's start to its export:
//
//   - The relay's goroutines start spans (Tracer.StartConn,
//     Conn.StartStream) on their own goroutine, and send every later
//     change, end included, as an op on Tracer.ops (Tracer.send), as
//     pkg/notify's goroutine does for Tracer.Notified. They never touch a
//     span after its start.
//   - The Tracer's one goroutine (loop: started by newTracer, ended by
//     stop) owns every span from then on. It applies the ops and ends the
//     spans, handing each to the span processor's OnEnd on it
//     (countedProcessor, drops.go); from then on the span is read-only.
//   - The batch span processor's goroutine, the SDK's, is the one caller
//     of the exporter (countedExporter around otlpExporter, or around the
//     exporter autoexport picked).
//
// Telemetry owns all of them: Setup builds the Tracer, its recorder
// (span.go) and the processor and exporter; Shutdown stops the Tracer
// first (it applies what was queued), then the processor, which flushes
// and shuts the exporter down.

// Span and attribute names hangup adds to the RPC semantic conventions.
const (
	ConnectionSpanName = "hangup.connection" // one per relayed client connection
	NotifySpanName     = "hangup.notify"     // one per delivered disconnect event

	EventRSTStream        = "http2.rst_stream"
	EventGoAway           = "http2.goaway"
	EventKeepaliveTimeout = "keepalive.ping_timeout"
	EventNotified         = "hangup.notified"

	AttrDisconnectReason    = attribute.Key("hangup.disconnect.reason")    // event.Reason name, e.g. RST_STREAM
	AttrDisconnectInitiator = attribute.Key("hangup.disconnect.initiator") // event.Initiator name, e.g. CLIENT
	AttrConnectionID        = attribute.Key("hangup.connection.id")        // x-hangup-connection-id
	AttrStreamID            = attribute.Key("http2.stream_id")
	AttrErrorCode           = attribute.Key("http2.error_code")     // RST_STREAM / GOAWAY code number
	AttrErrorName           = attribute.Key("http2.error_name")     // its RFC 9113 name, e.g. CANCEL
	AttrInitiator           = attribute.Key("hangup.initiator")     // who sent the frame
	AttrLastStreamID        = attribute.Key("http2.last_stream_id") // GOAWAY's last-stream-id
	AttrDebugData           = attribute.Key("http2.debug_data")     // GOAWAY's debug data
	AttrNotifyLatencyMS     = attribute.Key("hangup.notify.latency_ms")
	AttrNotifyAttempts      = attribute.Key("hangup.notify.attempts")
	AttrEventID             = attribute.Key("hangup.event.id")
	// The connection's round-trip time (event.RTT) in milliseconds, on the
	// connection span; absent when no sample was taken.
	AttrRTTLastMS     = attribute.Key("hangup.rtt.last_ms")
	AttrRTTMinMS      = attribute.Key("hangup.rtt.min_ms")
	AttrRTTSmoothedMS = attribute.Key("hangup.rtt.smoothed_ms")
	AttrRTTVarMS      = attribute.Key("hangup.rtt.var_ms")
	AttrRTTSamples    = attribute.Key("hangup.rtt.samples")
)

// Tracer records hangup's spans. It is built for the relay's connection
// loop: a span is started on the caller's goroutine, because the relay needs
// its traceparent at once to forward it to the app, but every later change
// (events, status, end) is a small value sent on a bounded channel to one
// background goroutine, which applies it with the caller's timestamps.
// When the channel is full the change is dropped and counted (Drops, where
// span_queue); a span whose end was dropped is never exported.
//
// A nil *Tracer is valid and does nothing: it is what Telemetry.Tracer
// returns when tracing is off, so the relay's only cost then is a nil check.
//
// Trace shape: each client connection has a "hangup.connection" span (a
// root). Each HTTP/2 stream has a SERVER span named by its gRPC method,
// whose parent is the client's traceparent (a new trace when there is none)
// and which links to its connection span. A delivered disconnect event adds
// a short "hangup.notify" child span to the stream span (see Notified).
type Tracer struct {
	// immutable
	r  *recorder
	tc propagation.TraceContext

	ops     chan op // to the background goroutine
	stopped chan struct{}
	wg      sync.WaitGroup

	drops *dropCounter // shared with the export's countedProcessor

	// atomic
	closed atomic.Bool
}

func newTracer(r *recorder, queue int, drops *dropCounter) *Tracer {
	t := &Tracer{
		r:       r,
		drops:   drops,
		ops:     make(chan op, queue),
		stopped: make(chan struct{}),
	}
	t.wg.Add(1)
	go t.loop()
	return t
}

// opKind says what an op does to its span.
type opKind uint8

const (
	opEndConn opKind = iota
	opEndStream
	opRSTStream
	opGoAway
	opKeepaliveTimeout
	opNotified
	opRTT
)

// op is one deferred span change, applied by the background goroutine.
type op struct {
	kind      opKind
	span      *spanData // nil for opNotified
	at        time.Time
	code      uint32 // HTTP/2 error code, or gRPC status with hasStatus
	lastID    uint32 // GOAWAY last-stream-id; delivery attempts for opNotified
	hasStatus bool
	reason    event.Reason
	initiator event.Initiator
	str       string        // GOAWAY debug data; event id for opNotified
	latency   time.Duration // opNotified
	parent    trace.SpanContext
	rtt       *event.RTT // opRTT: a pointer, so that every other op stays small
	stream    *Stream    // opEndStream: the RPC attributes to set
}

func (t *Tracer) loop() {
	defer t.wg.Done()
	for {
		select {
		case o := <-t.ops:
			t.apply(o)
			t.drops.warn()
		case <-t.stopped:
			for {
				select {
				case o := <-t.ops:
					t.apply(o)
				default:
					return
				}
			}
		}
	}
}

// stop ends the background goroutine after it applied what was queued.
// Operations sent afterwards are dropped and counted. One sent while stop
// runs can be neither (send saw the Tracer open, the goroutine had
// drained), which an atomic pair around every send would prevent at a cost
// to each span change: Telemetry.Shutdown is called once nothing sends any
// more (the sidecar stops it after the proxy's and the notifier's
// goroutines have ended).
func (t *Tracer) stop() {
	if !t.closed.Swap(true) {
		close(t.stopped)
	}
	t.wg.Wait()
}

func (t *Tracer) send(o op) {
	if t.closed.Load() {
		t.drops.spanQueue.Add(1)
		return
	}
	select {
	case t.ops <- o:
	default:
		t.drops.spanQueue.Add(1)
	}
}

// Dropped returns how many spans and span changes were lost (Drops' total):
// dropped from the span queue because it was full or the Tracer stopped,
// from the export queue, or by a failed export. Zero for a nil Tracer.
func (t *Tracer) Dropped() uint64 { return t.Drops().Total() }

// Drops returns what was lost so far, by where. Zero for a nil Tracer.
func (t *Tracer) Drops() Drops {
	if t == nil {
		return Drops{}
	}
	return t.drops.load()
}

func (t *Tracer) apply(o op) {
	if o.kind == opNotified {
		t.notifySpan(o)
		return
	}
	if o.span.ended {
		return // a change after the end, as the SDK ignores it: the span is the exporter's now
	}
	switch o.kind {
	case opRSTStream:
		o.span.addEvent(sdktrace.Event{Name: EventRSTStream, Time: o.at, Attributes: []attribute.KeyValue{
			AttrErrorCode.Int64(int64(o.code)),
			AttrErrorName.String(http2.ErrCode(o.code).String()),
			AttrInitiator.String(o.initiator.String()),
		}})
	case opGoAway:
		o.span.addEvent(sdktrace.Event{Name: EventGoAway, Time: o.at, Attributes: []attribute.KeyValue{
			AttrErrorCode.Int64(int64(o.code)),
			AttrErrorName.String(http2.ErrCode(o.code).String()),
			AttrLastStreamID.Int64(int64(o.lastID)),
			AttrDebugData.String(o.str),
			AttrInitiator.String(o.initiator.String()),
		}})
	case opKeepaliveTimeout:
		o.span.addEvent(sdktrace.Event{Name: EventKeepaliveTimeout, Time: o.at})
	case opEndStream:
		// A stream span has no attribute before its end: append, no
		// lookup.
		o.span.attrs = o.stream.appendAttrs(o.span.attrs)
		if o.hasStatus {
			o.span.attrs = append(o.span.attrs, semconv.RPCGRPCStatusCodeKey.Int64(int64(o.code)))
		}
		endWithReason(o)
	case opEndConn:
		endWithReason(o)
	case opRTT:
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		o.span.setAttrs(
			AttrRTTLastMS.Float64(ms(o.rtt.Last)),
			AttrRTTMinMS.Float64(ms(o.rtt.Min)),
			AttrRTTSmoothedMS.Float64(ms(o.rtt.Smoothed)),
			AttrRTTVarMS.Float64(ms(o.rtt.Var)),
			AttrRTTSamples.Int64(int64(o.rtt.Samples)),
		)
	}
}

// endWithReason sets the disconnect attributes and the status and ends
// the span.
func endWithReason(o op) {
	if o.reason != event.ReasonUnspecified {
		o.span.setAttrs(
			AttrDisconnectReason.String(o.reason.String()),
			AttrDisconnectInitiator.String(o.initiator.String()),
		)
		o.span.status = sdktrace.Status{Code: codes.Error, Description: o.reason.String()}
	} else {
		o.span.status = sdktrace.Status{Code: codes.Ok}
	}
	o.span.finish(o.at)
}

// notifySpan starts and ends the hangup.notify span of one delivery.
func (t *Tracer) notifySpan(o op) {
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), o.parent)
	d, _ := t.r.start(ctx, NotifySpanName, trace.SpanKindInternal, o.at.Add(-o.latency), nil)
	if d == nil {
		return
	}
	d.setAttrs(
		AttrNotifyLatencyMS.Float64(float64(o.latency)/float64(time.Millisecond)),
		AttrNotifyAttempts.Int64(int64(o.lastID)),
		AttrEventID.String(o.str),
	)
	d.addEvent(sdktrace.Event{Name: EventNotified, Time: o.at, Attributes: d.attrs[:2:2]})
	d.finish(o.at)
}

// ConnStart describes a new client connection.
type ConnStart struct {
	ID    string    // x-hangup-connection-id; optional
	Peer  string    // client address, "host:port"
	Start time.Time // when it was accepted; zero means now
}

// Conn is a client connection's span. A nil *Conn is valid and does
// nothing.
type Conn struct {
	t    *Tracer
	d    *spanData // the span, from its start on the Tracer goroutine's; nil when not sampled
	sc   trace.SpanContext
	peer []attribute.KeyValue // network.peer.*, shared read-only by its streams
	// link links a stream span to this span; built once and shared
	// read-only by its streams.
	link []sdktrace.Link
}

// StartConn starts a "hangup.connection" span, a root span in a new trace.
// It runs on the caller's goroutine (once per connection). Call End when
// the connection is gone.
func (t *Tracer) StartConn(c ConnStart) *Conn {
	if t == nil {
		return nil
	}
	if c.Start.IsZero() {
		c.Start = time.Now()
	}
	peer := peerAttrs(c.Peer)
	attrs := peer
	if c.ID != "" {
		attrs = append(attrs[:len(attrs):len(attrs)], AttrConnectionID.String(c.ID))
	}
	conn := &Conn{t: t, peer: peer}
	if conn.d, conn.sc = t.r.start(context.Background(), ConnectionSpanName, trace.SpanKindServer, c.Start, nil); conn.d != nil {
		conn.d.setAttrs(attrs...)
	}
	conn.link = []sdktrace.Link{{SpanContext: conn.sc}}
	return conn
}

func peerAttrs(hostport string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		if hostport == "" {
			return nil
		}
		return []attribute.KeyValue{semconv.NetworkPeerAddress(hostport)}
	}
	attrs := []attribute.KeyValue{semconv.NetworkPeerAddress(host)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, semconv.NetworkPeerPort(p))
	}
	return attrs
}

// GoAway adds an http2.goaway event to the connection span.
// initiator says who sent the frame.
func (c *Conn) GoAway(at time.Time, code, lastStreamID uint32, debug string, initiator event.Initiator) {
	if c == nil || c.d == nil {
		return
	}
	c.t.send(op{kind: opGoAway, span: c.d, at: at, code: code, lastID: lastStreamID, str: debug, initiator: initiator})
}

// KeepaliveTimeout adds a keepalive.ping_timeout event to the connection
// span.
func (c *Conn) KeepaliveTimeout(at time.Time) {
	if c == nil || c.d == nil {
		return
	}
	c.t.send(op{kind: opKeepaliveTimeout, span: c.d, at: at})
}

// RTT sets the connection's round-trip time as attributes of its span;
// nothing when no sample was taken. Call it before End.
func (c *Conn) RTT(r event.RTT) {
	if c == nil || c.d == nil || !r.Known() {
		return
	}
	c.t.send(op{kind: opRTT, span: c.d, rtt: &r})
}

// End ends the connection span at at. A reason other than
// event.ReasonUnspecified (the connection ended by a disconnect) sets
// status Error and the hangup.disconnect.* attributes; otherwise OK.
func (c *Conn) End(at time.Time, reason event.Reason, initiator event.Initiator) {
	if c == nil || c.d == nil {
		return
	}
	c.t.send(op{kind: opEndConn, span: c.d, at: at, reason: reason, initiator: initiator})
}

// TraceID returns the connection span's trace id in hex, "" for nil.
func (c *Conn) TraceID() string {
	if c == nil {
		return ""
	}
	return c.sc.TraceID().String()
}

// SpanID returns the connection span's span id in hex, "" for nil.
func (c *Conn) SpanID() string {
	if c == nil {
		return ""
	}
	return c.sc.SpanID().String()
}

// StreamStart describes a new HTTP/2 stream, from its request HEADERS.
type StreamStart struct {
	Traceparent string    // the client's traceparent header; "" when absent
	Tracestate  string    // the client's tracestate header; optional
	Method      string    // :path, "/package.Service/Method"
	Authority   string    // :authority
	StreamID    uint32    // HTTP/2 stream id
	Start       time.Time // when HEADERS arrived; zero means now
}

// Stream is one HTTP/2 stream's span. A nil *Stream is valid and does
// nothing.
type Stream struct {
	t *Tracer
	c *Conn
	// d is the span, from its start on the Tracer goroutine's; nil when
	// the sampler dropped it: its ids (sc) still propagate, with the
	// sampled flag off, but nothing is queued for it.
	d  *spanData
	sc trace.SpanContext

	// The RPC attributes, kept as strings (views of the caller's) and set
	// with the end's attributes by the background goroutine (see
	// appendAttrs).
	id                         uint32
	service, method, authority string
}

// StartStream starts the stream's SERVER span on the caller's goroutine: its
// parent is s.Traceparent when that is a valid W3C traceparent (a new trace
// otherwise), it links to the connection span, and it carries the RPC
// semantic convention attributes. Call End when the stream is over.
func (c *Conn) StartStream(s StreamStart) *Stream {
	if c == nil {
		return nil
	}
	if s.Start.IsZero() {
		s.Start = time.Now()
	}
	ctx := context.Background()
	if s.Traceparent != "" {
		ctx = c.t.tc.Extract(ctx, &headerCarrier{traceparent: s.Traceparent, tracestate: s.Tracestate})
	}
	name, service, method := splitMethod(s.Method)
	// The attributes are set at the end, with the end's, by the Tracer's
	// goroutine (see appendAttrs): the samplers OTEL_TRACES_SAMPLER names
	// do not read them, and the relay goroutine is spared their slice.
	st := &Stream{t: c.t, c: c, id: s.StreamID, service: service, method: method, authority: s.Authority}
	st.d, st.sc = c.t.r.start(ctx, name, trace.SpanKindServer, s.Start, c.link)
	return st
}

// appendAttrs appends the stream span's RPC semantic convention attributes
// to attrs: rpc.system, rpc.service, rpc.method, server.address (when the
// request had an :authority), network.peer.* and http2.stream_id.
func (s *Stream) appendAttrs(attrs []attribute.KeyValue) []attribute.KeyValue {
	attrs = append(attrs, semconv.RPCSystemGRPC, semconv.RPCService(s.service), semconv.RPCMethod(s.method))
	if s.authority != "" {
		attrs = append(attrs, serverAddress(s.authority))
	}
	attrs = append(attrs, s.c.peer...)
	return append(attrs, AttrStreamID.Int64(int64(s.id)))
}

// splitMethod turns ":path" /pkg.Svc/Method into the span name pkg.Svc/Method,
// the rpc.service pkg.Svc and the rpc.method Method.
func splitMethod(path string) (name, service, method string) {
	name = strings.TrimPrefix(path, "/")
	if name == "" {
		return "grpc", "", ""
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name, name[:i], name[i+1:]
	}
	return name, "", name
}

// serverAddress is server.address from :authority, without a port.
func serverAddress(authority string) attribute.KeyValue {
	if host, _, err := net.SplitHostPort(authority); err == nil {
		return semconv.ServerAddress(host)
	}
	return semconv.ServerAddress(authority)
}

// Traceparent returns the span's W3C traceparent, to send to the app in
// place of the client's so that the app's spans nest under the stream span.
// "" for nil. It writes what propagation.TraceContext.Inject writes
// (version 00; the sampled flag and W3C Level 2's random flag, which says
// the trace id is random and samplers downstream may rely on) without
// building a context and a carrier per stream.
func (s *Stream) Traceparent() string {
	if s == nil || !s.sc.IsValid() {
		return ""
	}
	tid, sid := s.sc.TraceID(), s.sc.SpanID()
	var b [55]byte // 00-<32 hex>-<16 hex>-<2 hex>
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:], []byte{byte(s.sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
}

// Tracestate returns the W3C tracestate to forward with Traceparent, often
// "". "" for nil.
func (s *Stream) Tracestate() string {
	if s == nil {
		return ""
	}
	return s.sc.TraceState().String()
}

// TraceID returns the span's trace id in hex (DisconnectEvent.trace_id), ""
// for nil.
func (s *Stream) TraceID() string {
	if s == nil {
		return ""
	}
	return s.sc.TraceID().String()
}

// Sampled reports whether the span was sampled; false for nil.
func (s *Stream) Sampled() bool { return s != nil && s.sc.IsSampled() }

// SpanID returns the span's id in hex (DisconnectEvent.span_id), "" for nil.
func (s *Stream) SpanID() string {
	if s == nil {
		return ""
	}
	return s.sc.SpanID().String()
}

// RSTStream adds an http2.rst_stream event: code is the RST_STREAM error
// code, initiator who sent it.
func (s *Stream) RSTStream(at time.Time, code uint32, initiator event.Initiator) {
	if s == nil || s.d == nil {
		return
	}
	s.t.send(op{kind: opRSTStream, span: s.d, at: at, code: code, initiator: initiator})
}

// GoAway adds an http2.goaway event to the stream span, for the streams a
// GOAWAY affects.
func (s *Stream) GoAway(at time.Time, code, lastStreamID uint32, debug string, initiator event.Initiator) {
	if s == nil || s.d == nil {
		return
	}
	s.t.send(op{kind: opGoAway, span: s.d, at: at, code: code, lastID: lastStreamID, str: debug, initiator: initiator})
}

// KeepaliveTimeout adds a keepalive.ping_timeout event to the stream span.
func (s *Stream) KeepaliveTimeout(at time.Time) {
	if s == nil || s.d == nil {
		return
	}
	s.t.send(op{kind: opKeepaliveTimeout, span: s.d, at: at})
}

// StreamEnd says how a stream ended.
type StreamEnd struct {
	At time.Time // when it ended (or the disconnect was detected)

	// GRPCStatus is the grpc-status trailer, recorded as
	// rpc.grpc.status_code when HasGRPCStatus is set.
	GRPCStatus    uint32
	HasGRPCStatus bool

	// Reason is the disconnect that ended the stream; with a reason other
	// than event.ReasonUnspecified the span gets status Error and the
	// hangup.disconnect.reason / .initiator attributes, otherwise OK.
	Reason    event.Reason
	Initiator event.Initiator
}

// End ends the stream span, on the background goroutine, at e.At.
func (s *Stream) End(e StreamEnd) {
	if s == nil || s.d == nil {
		return
	}
	s.t.send(op{kind: opEndStream, span: s.d, stream: s, at: e.At, code: e.GRPCStatus, hasStatus: e.HasGRPCStatus,
		reason: e.Reason, initiator: e.Initiator})
}

// Notified records that the app acknowledged ev, attempts calls and latency
// after it was published. It has notify.Config.OnDelivered's shape (see also
// Telemetry.OnDelivered).
//
// By then the stream span has ended and is likely exported, so instead of
// an event on it (which would hold every span open for as long as the app is
// unavailable) Notified emits a short "hangup.notify" INTERNAL span, a child
// of the span named by ev.TraceID / ev.SpanID, running from publication to
// acknowledgement, with a hangup.notified event carrying
// hangup.notify.latency_ms and hangup.notify.attempts. Events without valid
// trace and span ids are ignored, and so are those whose stream span was not
// sampled (ev.TraceSampled): it was never exported, so its child would be an
// orphan in the trace.
func (t *Tracer) Notified(ev event.Event, attempts int, latency time.Duration) {
	if t == nil || !ev.TraceSampled {
		return
	}
	tid, err1 := trace.TraceIDFromHex(ev.TraceID)
	sid, err2 := trace.SpanIDFromHex(ev.SpanID)
	if err1 != nil || err2 != nil {
		return
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	t.send(op{kind: opNotified, at: time.Now(), latency: latency, lastID: uint32(attempts), str: ev.ID, parent: parent})
}

// headerCarrier carries the two W3C trace context headers without a map.
type headerCarrier struct{ traceparent, tracestate string }

var _ propagation.TextMapCarrier = (*headerCarrier)(nil)

func (h *headerCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return h.traceparent
	case "tracestate":
		return h.tracestate
	}
	return ""
}

func (h *headerCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		h.traceparent = value
	case "tracestate":
		h.tracestate = value
	}
}

func (h *headerCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
