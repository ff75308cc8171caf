// Package event is hangup's disconnect event model: what ended (Scope), why
// (Reason), who ended it (Initiator), the Event itself and the Sink the relay
// hands it to.
//
// It is a leaf: it imports only the standard library, so that the pure
// packages that produce events (pkg/keepalive's policy, the relay in
// pkg/proxy) compile without gRPC or protobuf. Delivering an event to the
// app is pkg/notify's job, and its wire form is api/hangup/notify/v1; this
// package must not import either.
package event

import "time"

// Scope says whether an event is about one stream or a whole connection.
// The numbers match hangup.notify.v1.Scope.
type Scope int32

// Scopes.
const (
	ScopeUnspecified Scope = 0
	ScopeStream      Scope = 1
	ScopeConnection  Scope = 2
	// ScopeSidecar: every connection of every sidecar process other than
	// Event.Incarnation is gone (see ReasonSidecarRestart).
	ScopeSidecar Scope = 3
)

// Reason says why a client is gone. The numbers match hangup.notify.v1.Reason.
type Reason int32

// Reasons, as in DESIGN.md's table "What counts as a disconnect".
const (
	ReasonUnspecified      Reason = 0
	ReasonRSTStream        Reason = 1
	ReasonGoAway           Reason = 2
	ReasonKeepaliveTimeout Reason = 3
	ReasonConnectionClosed Reason = 4
	ReasonConnectionReset  Reason = 5
	ReasonIdleTimeout      Reason = 6
	ReasonMaxAge           Reason = 7
	ReasonPingAbuse        Reason = 8
	ReasonProtocolError    Reason = 9
	ReasonShutdown         Reason = 10
	// ReasonSidecarRestart names the sidecar process now live: the
	// streams of any other incarnation died with their process, which
	// could not report them. Only with ScopeSidecar.
	ReasonSidecarRestart Reason = 11
	// ReasonResumed replaces the held loss of a stream on a method with
	// reconnect grace (pkg/grace): a new stream carrying the same session
	// key arrived within the grace. Resumed* name the new stream.
	ReasonResumed Reason = 12
)

var reasonNames = [...]string{
	"UNSPECIFIED", "RST_STREAM", "GOAWAY", "KEEPALIVE_TIMEOUT", "CONNECTION_CLOSED",
	"CONNECTION_RESET", "IDLE_TIMEOUT", "MAX_AGE", "PING_ABUSE", "PROTOCOL_ERROR", "SHUTDOWN",
	"SIDECAR_RESTART", "RESUMED",
}

func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "UNKNOWN"
}

func (s Scope) String() string {
	switch s {
	case ScopeStream:
		return "STREAM"
	case ScopeConnection:
		return "CONNECTION"
	case ScopeSidecar:
		return "SIDECAR"
	}
	return "UNSPECIFIED"
}

// Initiator says which side ended the stream or connection.
// The numbers match hangup.notify.v1.Initiator.
type Initiator int32

// Initiators.
const (
	InitiatorUnspecified Initiator = 0
	InitiatorClient      Initiator = 1
	InitiatorSidecar     Initiator = 2
	InitiatorApp         Initiator = 3
)

func (i Initiator) String() string {
	switch i {
	case InitiatorClient:
		return "CLIENT"
	case InitiatorSidecar:
		return "SIDECAR"
	case InitiatorApp:
		return "APP"
	}
	return "UNSPECIFIED"
}

// Event is one disconnect, as the relay detected it. It is the Go form of
// hangup.notify.v1.DisconnectEvent; string fields are empty when unknown.
type Event struct {
	ID             string    // unique, stable across delivery retries
	Scope          Scope     // stream or connection
	Reason         Reason    // why
	Initiator      Initiator // who
	HTTP2ErrorCode uint32    // RST_STREAM / GOAWAY error code; 0 when none was sent
	ConnectionID   string    // the x-hangup-connection-id the app saw
	StreamID       uint32    // the x-hangup-stream-id the app saw; 0 for connection scope
	Method         string    // :path
	Authority      string    // :authority
	Headers        map[string]string
	PeerAddress    string
	StartedAt      time.Time
	DetectedAt     time.Time
	TraceID        string
	SpanID         string
	// TraceSampled says the stream span named by TraceID and SpanID was
	// sampled. It is not sent to the app: the sidecar's own hangup.notify
	// span follows it, so that an unsampled stream leaves no orphan.
	TraceSampled    bool
	GoAwayDebug     string
	BytesFromClient uint64
	BytesToClient   uint64
	// Incarnation is the sidecar process that made the event (Incarnation()
	// when the Notifier sends it); for ScopeSidecar, the process now live.
	Incarnation string
	// SessionKey is the value of the session header (--session-header) of
	// a stream on a method with reconnect grace; empty otherwise.
	SessionKey string
	// ResumedConnectionID and ResumedStreamID name the new stream that
	// resumed this one's session, and ResumedAt when it arrived; set only
	// with ReasonResumed.
	ResumedConnectionID string
	ResumedStreamID     uint32
	ResumedAt           time.Time
	// RTT is the connection's round-trip time when the event was made.
	RTT RTT
}

// RTT is a connection's round-trip time as the sidecar measured it, from
// its own PINGs to the ACKs. Samples is 0 while nothing was measured: the
// durations are then zero and mean "unknown", not "no delay".
type RTT struct {
	Last     time.Duration // the latest sample
	Min      time.Duration // the smallest sample
	Smoothed time.Duration // RFC 6298 SRTT (gain 1/8)
	Var      time.Duration // RFC 6298 RTTVAR (gain 1/4)
	Samples  uint32        // how many ACKs were timed
}

// Known reports whether at least one sample was taken.
func (r RTT) Known() bool { return r.Samples > 0 }

// Sink receives events from the relay. Publish must never block the caller:
// it runs on the data path.
type Sink interface {
	Publish(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Publish calls f(e).
func (f SinkFunc) Publish(e Event) { f(e) }
