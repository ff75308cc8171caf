package notify

import "github.com/hangup-dev/hangup/pkg/event"

// The event model lives in the leaf package pkg/event, so that the packages
// that make events build without gRPC; every other package names it there.
// These aliases are this package's own shorthand.
type (
	// Scope is event.Scope.
	Scope = event.Scope
	// Reason is event.Reason.
	Reason = event.Reason
	// Initiator is event.Initiator.
	Initiator = event.Initiator
	// Event is event.Event.
	Event = event.Event
	// Sink is event.Sink.
	Sink = event.Sink
	// SinkFunc is event.SinkFunc.
	SinkFunc = event.SinkFunc
)

// Scopes, reasons and initiators: see pkg/event.
const (
	ScopeUnspecified = event.ScopeUnspecified
	ScopeStream      = event.ScopeStream
	ScopeConnection  = event.ScopeConnection
	ScopeSidecar     = event.ScopeSidecar

	ReasonUnspecified      = event.ReasonUnspecified
	ReasonRSTStream        = event.ReasonRSTStream
	ReasonGoAway           = event.ReasonGoAway
	ReasonKeepaliveTimeout = event.ReasonKeepaliveTimeout
	ReasonConnectionClosed = event.ReasonConnectionClosed
	ReasonConnectionReset  = event.ReasonConnectionReset
	ReasonIdleTimeout      = event.ReasonIdleTimeout
	ReasonMaxAge           = event.ReasonMaxAge
	ReasonPingAbuse        = event.ReasonPingAbuse
	ReasonProtocolError    = event.ReasonProtocolError
	ReasonShutdown         = event.ReasonShutdown
	ReasonSidecarRestart   = event.ReasonSidecarRestart
	ReasonResumed          = event.ReasonResumed

	InitiatorUnspecified = event.InitiatorUnspecified
	InitiatorClient      = event.InitiatorClient
	InitiatorSidecar     = event.InitiatorSidecar
	InitiatorApp         = event.InitiatorApp
)

// NewEventID is event.NewEventID.
func NewEventID() string { return event.NewEventID() }
