package notify

import (
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

// ToProto converts an Event to its wire form. Zero times stay unset; the
// Headers map is copied, so the result does not alias ev.
func ToProto(ev Event) *notifyv1.DisconnectEvent {
	return &notifyv1.DisconnectEvent{
		EventId:         ev.ID,
		Scope:           notifyv1.Scope(ev.Scope),
		Reason:          notifyv1.Reason(ev.Reason),
		Initiator:       notifyv1.Initiator(ev.Initiator),
		Http2ErrorCode:  ev.HTTP2ErrorCode,
		ConnectionId:    ev.ConnectionID,
		StreamId:        ev.StreamID,
		Method:          ev.Method,
		Authority:       ev.Authority,
		Headers:         maps.Clone(ev.Headers),
		PeerAddress:     ev.PeerAddress,
		StartedAt:       timestamp(ev.StartedAt),
		DetectedAt:      timestamp(ev.DetectedAt),
		TraceId:         ev.TraceID,
		SpanId:          ev.SpanID,
		GoawayDebugData: ev.GoAwayDebug,
		BytesFromClient: ev.BytesFromClient,
		BytesToClient:   ev.BytesToClient,
		Incarnation:     ev.Incarnation,

		ResumedConnectionId: ev.ResumedConnectionID,
		ResumedStreamId:     ev.ResumedStreamID,
		SessionKey:          ev.SessionKey,
		ResumedAt:           timestamp(ev.ResumedAt),
	}
}

// FromProto converts a wire event back to an Event, for receivers written in
// Go. Unset timestamps become the zero time.
func FromProto(pe *notifyv1.DisconnectEvent) Event {
	return Event{
		ID:              pe.GetEventId(),
		Scope:           Scope(pe.GetScope()),
		Reason:          Reason(pe.GetReason()),
		Initiator:       Initiator(pe.GetInitiator()),
		HTTP2ErrorCode:  pe.GetHttp2ErrorCode(),
		ConnectionID:    pe.GetConnectionId(),
		StreamID:        pe.GetStreamId(),
		Method:          pe.GetMethod(),
		Authority:       pe.GetAuthority(),
		Headers:         maps.Clone(pe.GetHeaders()),
		PeerAddress:     pe.GetPeerAddress(),
		StartedAt:       fromTimestamp(pe.GetStartedAt()),
		DetectedAt:      fromTimestamp(pe.GetDetectedAt()),
		TraceID:         pe.GetTraceId(),
		SpanID:          pe.GetSpanId(),
		GoAwayDebug:     pe.GetGoawayDebugData(),
		BytesFromClient: pe.GetBytesFromClient(),
		BytesToClient:   pe.GetBytesToClient(),
		Incarnation:     pe.GetIncarnation(),

		ResumedConnectionID: pe.GetResumedConnectionId(),
		ResumedStreamID:     pe.GetResumedStreamId(),
		SessionKey:          pe.GetSessionKey(),
		ResumedAt:           fromTimestamp(pe.GetResumedAt()),
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTimestamp(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
