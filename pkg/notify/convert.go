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
	w := new(wireEvent)
	pe := w.set(ev)
	pe.Headers = maps.Clone(ev.Headers)
	return pe
}

// wireEvent is a DisconnectEvent with room for its timestamps and RTT
// durations, so that one allocation holds an event's whole wire form and
// the sender can reuse it for the next batch (a burst's allocations were a
// third of the sidecar's CPU, in its own malloc and in the GC).
type wireEvent struct {
	pe  notifyv1.DisconnectEvent
	ts  [3]timestamppb.Timestamp // started, detected, resumed
	rtt [3]durationpb.Duration   // last, min, smoothed
}

// set overwrites w with ev's wire form and returns it. The Headers map is
// ev's own, not a copy: the result aliases ev.
func (w *wireEvent) set(ev Event) *notifyv1.DisconnectEvent {
	w.pe = notifyv1.DisconnectEvent{
		EventId:         ev.ID,
		Scope:           notifyv1.Scope(ev.Scope),
		Reason:          notifyv1.Reason(ev.Reason),
		Initiator:       notifyv1.Initiator(ev.Initiator),
		Http2ErrorCode:  ev.HTTP2ErrorCode,
		ConnectionId:    ev.ConnectionID,
		StreamId:        ev.StreamID,
		Method:          ev.Method,
		Authority:       ev.Authority,
		Headers:         ev.Headers,
		PeerAddress:     ev.PeerAddress,
		StartedAt:       setTimestamp(&w.ts[0], ev.StartedAt),
		DetectedAt:      setTimestamp(&w.ts[1], ev.DetectedAt),
		TraceId:         ev.TraceID,
		SpanId:          ev.SpanID,
		GoawayDebugData: ev.GoAwayDebug,
		BytesFromClient: ev.BytesFromClient,
		BytesToClient:   ev.BytesToClient,
		Incarnation:     ev.Incarnation,

		ResumedConnectionId: ev.ResumedConnectionID,
		ResumedStreamId:     ev.ResumedStreamID,
		SessionKey:          ev.SessionKey,
		ResumedAt:           setTimestamp(&w.ts[2], ev.ResumedAt),
	}
	if ev.RTT.Known() {
		w.pe.RttLast = setDuration(&w.rtt[0], ev.RTT.Last)
		w.pe.RttMin = setDuration(&w.rtt[1], ev.RTT.Min)
		w.pe.RttSmoothed = setDuration(&w.rtt[2], ev.RTT.Smoothed)
	}
	return &w.pe
}

// setTimestamp sets *ts to t as timestamppb.New does and returns ts; nil
// for the zero time.
func setTimestamp(ts *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	*ts = timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
	return ts
}

// setDuration sets *pd to d as durationpb.New does and returns pd.
func setDuration(pd *durationpb.Duration, d time.Duration) *durationpb.Duration {
	nanos := d.Nanoseconds()
	secs := nanos / 1e9
	*pd = durationpb.Duration{Seconds: secs, Nanos: int32(nanos - secs*1e9)}
	return pd
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

func fromTimestamp(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
