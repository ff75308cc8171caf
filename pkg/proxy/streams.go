package proxy

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// streamState is a stream's state as RFC 9113 §5.1 names it, seen from the
// app (the server): "remote" is the client, "local" the app. An idle stream
// has no state here: a stream enters the table with its request HEADERS.
type streamState uint8

const (
	stateOpen             streamState = iota
	stateHalfClosedRemote             // the client sent END_STREAM
	stateHalfClosedLocal              // the app sent END_STREAM
	stateClosed
)

var stateNames = [...]string{"open", "half-closed (remote)", "half-closed (local)", "closed"}

func (s streamState) String() string { return stateNames[s] }

// stream is what the relay knows of one client-initiated stream.
type stream struct {
	id        uint32
	state     streamState
	method    string // :path
	authority string // :authority
	headers   map[string]string
	session   string // the session header's value, on a method with reconnect grace
	startedAt time.Time
	answered  bool // the app has sent response HEADERS

	bytesFromClient uint64 // DATA payload bytes, padding included
	bytesToClient   uint64

	grpcStatus string // from the app's trailers; "" until they arrive

	span *telemetry.Stream // nil when tracing is off
}

// source is who sent a stream's frames: the client or the app.
type source uint8

const (
	fromClient source = iota
	fromApp
)

// dataFrom counts n DATA payload bytes that src sent.
func (s *stream) dataFrom(src source, n int) {
	if src == fromClient {
		s.bytesFromClient += uint64(n)
	} else {
		s.bytesToClient += uint64(n)
	}
}

// endFrom records END_STREAM sent by src.
func (s *stream) endFrom(src source) {
	if src == fromClient {
		s.endFromClient()
	} else {
		s.endFromApp()
	}
}

// endFromClient records END_STREAM sent by the client.
func (s *stream) endFromClient() {
	switch s.state {
	case stateOpen:
		s.state = stateHalfClosedRemote
	case stateHalfClosedLocal:
		s.state = stateClosed
	}
}

// endFromApp records END_STREAM sent by the app.
func (s *stream) endFromApp() {
	switch s.state {
	case stateOpen:
		s.state = stateHalfClosedLocal
	case stateHalfClosedRemote:
		s.state = stateClosed
	}
}

// appDone reports whether the app has finished the call: its handler no
// longer runs, so losing the client is no longer worth an event.
func (s *stream) appDone() bool {
	return s.state == stateHalfClosedLocal || s.state == stateClosed
}

// streamTable holds the open streams of one connection. It is sized by the
// streams open now, not by the ids seen: closed streams are deleted, and
// lastClientID tells a closed stream from an idle one.
type streamTable struct {
	open         map[uint32]*stream
	lastClientID uint32 // highest client stream id opened
	opened       uint64 // streams opened over the connection's life
}

func newStreamTable() streamTable {
	return streamTable{open: make(map[uint32]*stream)}
}

// streamPool recycles the streams of ended calls: a unary call would
// otherwise allocate one per call.
var streamPool = sync.Pool{New: func() any { return new(stream) }}

// get returns the open stream with this id, or nil.
func (t *streamTable) get(id uint32) *stream { return t.open[id] }

// start opens a stream for a request HEADERS frame on an idle client stream
// id. It returns nil when the id cannot open a stream (even, or not above
// the last one): the frame is forwarded and the app answers it.
func (t *streamTable) start(id uint32, now time.Time) *stream {
	if id%2 == 0 || id <= t.lastClientID {
		return nil
	}
	t.lastClientID = id
	t.opened++
	s := streamPool.Get().(*stream)
	*s = stream{id: id, state: stateOpen, startedAt: now}
	t.open[id] = s
	return s
}

// remove takes s out of the table, closed, and recycles it: s must not be
// used once another stream has started.
func (t *streamTable) remove(s *stream) {
	s.state = stateClosed
	delete(t.open, s.id)
	streamPool.Put(s)
}

// endSpan ends the stream's span: OK (with the gRPC status from the
// trailers) for a stream that ended normally, Error with the reason for a
// disconnect.
func (s *stream) endSpan(at time.Time, reason event.Reason, who event.Initiator) {
	if s.span == nil {
		return
	}
	e := telemetry.StreamEnd{At: at, Reason: reason, Initiator: who}
	if code, err := strconv.ParseUint(s.grpcStatus, 10, 32); err == nil {
		e.GRPCStatus, e.HasGRPCStatus = uint32(code), true
	}
	s.span.End(e)
}

// openStreamLocked starts the stream a request HEADERS read at now opens; nil
// when the id cannot open one.
func (c *conn) openStreamLocked(id uint32, fields []hpack.HeaderField, now time.Time) *stream {
	s := c.streams.start(id, now)
	if s == nil {
		return nil
	}
	s.method = fieldValue(fields, ":path")
	s.authority = fieldValue(fields, ":authority")
	c.ka.StreamOpened(now)
	c.metrics.StreamOpened()
	if c.span != nil {
		s.span = c.span.StartStream(telemetry.StreamStart{
			Traceparent: fieldValue(fields, "traceparent"), Tracestate: fieldValue(fields, "tracestate"),
			Method: s.method, Authority: s.authority, StreamID: id, Start: now,
		})
	}
	for _, name := range c.srv.cfg.NotifyHeaders {
		if v := fieldValue(fields, name); v != "" {
			if s.headers == nil {
				s.headers = make(map[string]string, len(c.srv.cfg.NotifyHeaders))
			}
			s.headers[name] = v
		}
	}
	if g := c.srv.cfg.Sessions; g != nil && g.Graced(s.method) {
		if s.session = fieldValue(fields, g.SessionHeader()); s.session != "" {
			g.StreamOpened(s.method, s.session, c.id, id)
		}
	}
	return s
}

// retireIfClosedLocked retires a stream once both sides have ended it, the last of them in
// a batch read at now.
func (c *conn) retireIfClosedLocked(s *stream, now time.Time) {
	if s.state == stateClosed {
		c.retireStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
		c.queueActionsLocked(now, c.ka.StreamClosed(now))
	}
}

// resetStreamLocked retires a stream that a RST_STREAM ended; reason is set when
// that was a disconnect.
func (c *conn) resetStreamLocked(s *stream, now time.Time, reason event.Reason, who event.Initiator) {
	c.retireStreamLocked(s, now, reason, who)
	c.queueActionsLocked(now, c.ka.StreamClosed(now))
}

// retireStreamLocked ends a stream's span and metric and removes it from the table;
// s must not be used afterwards.
func (c *conn) retireStreamLocked(s *stream, now time.Time, reason event.Reason, who event.Initiator) {
	s.endSpan(now, reason, who)
	c.streams.remove(s)
	c.metrics.StreamClosed()
}

// onClientResetLocked handles RST_STREAM from the client; it fails when the reset
// overdraws the Rapid Reset budget.
func (c *conn) onClientResetLocked(id uint32, code http2.ErrCode, events *[]event.Event) error {
	s := c.streams.get(id)
	if s == nil {
		return nil
	}
	now := c.srv.cfg.Now()
	var err error
	if !s.answered && now.Sub(s.startedAt) < prematureResetWindow {
		err = c.spendResetLocked(now)
	}
	s.span.RSTStream(now, uint32(code), event.InitiatorClient)
	if s.appDone() {
		c.resetStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
	} else {
		*events = append(*events, c.streamEventLocked(s, event.ReasonRSTStream, event.InitiatorClient, uint32(code), "", now))
		c.resetStreamLocked(s, now, event.ReasonRSTStream, event.InitiatorClient)
	}
	return err
}

// onAppResetLocked handles RST_STREAM from the app: the app's choice, not a
// disconnect.
func (c *conn) onAppResetLocked(id uint32, code http2.ErrCode) {
	c.refuse.appResetLocked(id)
	if s := c.streams.get(id); s != nil {
		c.srv.cfg.Logger.Debug("app reset stream", "conn", c.id, "stream", id, "code", code.String(), "initiator", event.InitiatorApp.String())
		now := c.srv.cfg.Now()
		s.span.RSTStream(now, uint32(code), event.InitiatorApp)
		c.resetStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
	}
}

// onAppGoAwayLocked records the app's GOAWAY. The streams above its
// last-stream-id were never processed: they leave the table with no
// event (the client retries them), and new ones are refused.
func (c *conn) onAppGoAwayLocked(last uint32, code http2.ErrCode, debug []byte) {
	c.srv.cfg.Logger.Debug("app sent GOAWAY", "conn", c.id, "last_stream", last, "code", code.String(),
		"debug", string(debug), "initiator", event.InitiatorApp.String())
	now := c.srv.cfg.Now()
	c.span.GoAway(now, uint32(code), last, string(debug), event.InitiatorApp)
	c.refuse.goAwayLocked(last)
	for id, s := range c.streams.open {
		if id > last {
			c.resetStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
		}
	}
}
