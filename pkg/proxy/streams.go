package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/hangup-dev/hangup/pkg/notify"
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
	startedAt time.Time
	answered  bool // the app has sent response HEADERS

	bytesFromClient uint64 // DATA payload bytes, padding included
	bytesToClient   uint64

	grpcStatus string // from the app's trailers; "" until they arrive

	span *telemetry.Stream // nil when tracing is off
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
func (s *stream) endSpan(at time.Time, reason notify.Reason, who notify.Initiator) {
	if s.span == nil {
		return
	}
	e := telemetry.StreamEnd{At: at, Reason: reason, Initiator: who}
	if code, err := strconv.ParseUint(s.grpcStatus, 10, 32); err == nil {
		e.GRPCStatus, e.HasGRPCStatus = uint32(code), true
	}
	s.span.End(e)
}
