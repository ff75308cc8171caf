package notify

import (
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
)

// ToProto converts an Event to its wire form. Zero times and an RTT that is
// not Known stay unset; the Headers map is copied, so the result does not
// alias ev.
func ToProto(ev Event) *notifyv1.DisconnectEvent {
	pe := &notifyv1.DisconnectEvent{
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
	if ev.RTT.Known() {
		pe.RttLast = durationpb.New(ev.RTT.Last)
		pe.RttMin = durationpb.New(ev.RTT.Min)
		pe.RttSmoothed = durationpb.New(ev.RTT.Smoothed)
	}
	return pe
}

// FromProto converts a wire event back to an Event, for receivers written in
// Go. Unset timestamps become the zero time. The wire carries neither the
// RTT's sample count nor its variation: an event with rtt_last set gets
// RTT.Samples 1, so that RTT.Known holds, and RTT.Var 0.
func FromProto(pe *notifyv1.DisconnectEvent) Event {
	ev := Event{
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
	if pe.GetRttLast() != nil {
		ev.RTT = event.RTT{
			Last:     pe.GetRttLast().AsDuration(),
			Min:      pe.GetRttMin().AsDuration(),
			Smoothed: pe.GetRttSmoothed().AsDuration(),
			Samples:  1,
		}
	}
	return ev
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
