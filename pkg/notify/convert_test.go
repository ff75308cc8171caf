package notify

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
)

func TestToProto(t *testing.T) {
	started := time.Date(2026, 11, 24, 10, 0, 0, 5, time.UTC)
	detected := started.Add(3 * time.Second)
	full := Event{
		ID: "id1", Scope: ScopeStream, Reason: ReasonGoAway, Initiator: InitiatorClient,
		HTTP2ErrorCode: 2, ConnectionID: "c1", StreamID: 7, Method: "/chat.v1.ChatService/Chat",
		Authority: "chat:8080", Headers: map[string]string{"x-tenant": "t1"}, PeerAddress: "10.0.0.1:5555",
		StartedAt: started, DetectedAt: detected, TraceID: "0af7651916cd43dd8448eb211c80319c",
		SpanID: "b7ad6b7169203331", GoAwayDebug: "bye", BytesFromClient: 10, BytesToClient: 20,
		Incarnation: "0A1B2C3D",
		RTT:         event.RTT{Last: 21 * time.Millisecond, Min: 20 * time.Millisecond, Smoothed: 20500 * time.Microsecond, Samples: 1},
	}
	tests := []struct {
		name string
		ev   Event
		want *notifyv1.DisconnectEvent
		back *Event // what FromProto gives back; nil: ev
	}{
		{"every field", full, &notifyv1.DisconnectEvent{
			EventId: "id1", Scope: notifyv1.Scope_SCOPE_STREAM, Reason: notifyv1.Reason_REASON_GOAWAY,
			Initiator: notifyv1.Initiator_INITIATOR_CLIENT, Http2ErrorCode: 2, ConnectionId: "c1", StreamId: 7,
			Method: "/chat.v1.ChatService/Chat", Authority: "chat:8080", Headers: map[string]string{"x-tenant": "t1"},
			PeerAddress: "10.0.0.1:5555", StartedAt: timestamppb.New(started), DetectedAt: timestamppb.New(detected),
			TraceId: "0af7651916cd43dd8448eb211c80319c", SpanId: "b7ad6b7169203331", GoawayDebugData: "bye",
			BytesFromClient: 10, BytesToClient: 20, Incarnation: "0A1B2C3D",
			RttLast: durationpb.New(21 * time.Millisecond), RttMin: durationpb.New(20 * time.Millisecond),
			RttSmoothed: durationpb.New(20500 * time.Microsecond),
		}, nil},
		{"a measured zero RTT is set, not unknown",
			Event{ID: "id4", Scope: ScopeConnection, Reason: ReasonShutdown, RTT: event.RTT{Var: time.Millisecond, Samples: 3}},
			&notifyv1.DisconnectEvent{EventId: "id4", Scope: notifyv1.Scope_SCOPE_CONNECTION, Reason: notifyv1.Reason_REASON_SHUTDOWN,
				RttLast: durationpb.New(0), RttMin: durationpb.New(0), RttSmoothed: durationpb.New(0)},
			// Neither the count nor the variation is on the wire.
			&Event{ID: "id4", Scope: ScopeConnection, Reason: ReasonShutdown, RTT: event.RTT{Samples: 1}}},
		{"sidecar restart", Event{ID: "id3", Scope: ScopeSidecar, Reason: ReasonSidecarRestart, Initiator: InitiatorSidecar, Incarnation: "0A1B2C3D"},
			&notifyv1.DisconnectEvent{EventId: "id3", Scope: notifyv1.Scope_SCOPE_SIDECAR, Reason: notifyv1.Reason_REASON_SIDECAR_RESTART,
				Initiator: notifyv1.Initiator_INITIATOR_SIDECAR, Incarnation: "0A1B2C3D"}, nil},
		{"resumed", Event{ID: "id5", Scope: ScopeStream, Reason: ReasonResumed, Initiator: InitiatorClient, ConnectionID: "c1", StreamID: 7,
			DetectedAt: detected, SessionKey: "s-42", ResumedConnectionID: "c2", ResumedStreamID: 1, ResumedAt: detected.Add(time.Second)},
			&notifyv1.DisconnectEvent{EventId: "id5", Scope: notifyv1.Scope_SCOPE_STREAM, Reason: notifyv1.Reason_REASON_RESUMED,
				Initiator: notifyv1.Initiator_INITIATOR_CLIENT, ConnectionId: "c1", StreamId: 7, DetectedAt: timestamppb.New(detected),
				SessionKey: "s-42", ResumedConnectionId: "c2", ResumedStreamId: 1, ResumedAt: timestamppb.New(detected.Add(time.Second))}, nil},
		{"zero times stay unset", Event{ID: "id2", Scope: ScopeConnection, Reason: ReasonShutdown},
			&notifyv1.DisconnectEvent{EventId: "id2", Scope: notifyv1.Scope_SCOPE_CONNECTION, Reason: notifyv1.Reason_REASON_SHUTDOWN}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToProto(tt.ev)
			if !proto.Equal(got, tt.want) {
				t.Errorf("ToProto() =\n%v\nwant\n%v", got, tt.want)
			}
			want := tt.ev
			if tt.back != nil {
				want = *tt.back
			}
			if back := FromProto(got); !reflect.DeepEqual(back, want) {
				t.Errorf("FromProto(ToProto()) =\n%+v\nwant\n%+v", back, want)
			}
		})
	}
}

// TestEnumNumbersMatch guards the promise in event.go: the Go numbers are the
// wire numbers.
func TestEnumNumbersMatch(t *testing.T) {
	for r := ReasonUnspecified; r <= ReasonResumed; r++ {
		if got, want := notifyv1.Reason(r).String(), "REASON_"+r.String(); got != want {
			t.Errorf("Reason %d: proto name %s, want %s", r, got, want)
		}
	}
	for s := ScopeUnspecified; s <= ScopeSidecar; s++ {
		if got, want := notifyv1.Scope(s).String(), "SCOPE_"+s.String(); got != want {
			t.Errorf("Scope %d: proto name %s, want %s", s, got, want)
		}
	}
	for i := InitiatorUnspecified; i <= InitiatorApp; i++ {
		if got, want := notifyv1.Initiator(i).String(), "INITIATOR_"+i.String(); got != want {
			t.Errorf("Initiator %d: proto name %s, want %s", i, got, want)
		}
	}
	if len(notifyv1.Reason_name) != int(ReasonResumed)+1 {
		t.Errorf("proto has %d reasons, Go %d", len(notifyv1.Reason_name), ReasonResumed+1)
	}
	if len(notifyv1.Scope_name) != int(ScopeSidecar)+1 {
		t.Errorf("proto has %d scopes, Go %d", len(notifyv1.Scope_name), ScopeSidecar+1)
	}
}

// TestWireEventReuse: the sender fills the same wireEvent for event after
// event; nothing of an earlier event may stay in a later one's wire form.
func TestWireEventReuse(t *testing.T) {
	full := Event{
		ID: "id1", Scope: ScopeStream, Reason: ReasonResumed, Initiator: InitiatorClient, HTTP2ErrorCode: 8,
		ConnectionID: "c1", StreamID: 7, Method: "/m", Authority: "a", Headers: map[string]string{"x": "y"},
		PeerAddress: "10.0.0.1:1", StartedAt: time.Unix(1, 2), DetectedAt: time.Unix(3, 4), TraceID: "t", SpanID: "s",
		GoAwayDebug: "d", BytesFromClient: 1, BytesToClient: 2, Incarnation: "i", SessionKey: "k",
		ResumedConnectionID: "c2", ResumedStreamID: 9, ResumedAt: time.Unix(5, 6),
		RTT: event.RTT{Last: -time.Millisecond - 5, Min: time.Second + 1, Smoothed: 3, Samples: 2},
	}
	minimal := Event{ID: "id2", Scope: ScopeConnection, Reason: ReasonShutdown}
	var w wireEvent
	for _, ev := range []Event{full, minimal, full} {
		if got, want := w.set(ev), ToProto(ev); !proto.Equal(got, want) {
			t.Errorf("reused wire form of %s:\n got %v\nwant %v", ev.ID, got, want)
		}
	}
	// ToProto's durations as durationpb.New makes them, negative ones too.
	if got, want := ToProto(full).GetRttLast(), durationpb.New(full.RTT.Last); !proto.Equal(got, want) {
		t.Errorf("rtt_last = %v, want %v", got, want)
	}
}

// TestSizeBound: sizeBound never counts less than an event's encoding takes
// in a NotifyRequest, with every field of the proto at its largest, so that
// a call capped by it stays within MaxCallBytes. A string field added to
// the proto (and to the conversion) but not to sizeBound fails here.
func TestSizeBound(t *testing.T) {
	// Every field of the wire form set through reflection, none forgotten:
	// strings long enough for two-byte lengths, numbers at their widest.
	full := &notifyv1.DisconnectEvent{}
	m := full.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.IsMap():
			mp := m.Mutable(f).Map()
			for j := range 3 {
				mp.Set(protoreflect.ValueOfString(fmt.Sprintf("x-header-%d", j)).MapKey(), protoreflect.ValueOfString(strings.Repeat("v", 200+j)))
			}
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(strings.Repeat("s", 300+i)))
		case f.Kind() == protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(-1)) // ten bytes, the most
		case f.Kind() == protoreflect.Uint32Kind:
			m.Set(f, protoreflect.ValueOfUint32(math.MaxUint32))
		case f.Kind() == protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(math.MaxUint64))
		case f.Message() != nil && f.Message().FullName() == "google.protobuf.Timestamp":
			m.Set(f, protoreflect.ValueOfMessage(timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 999999999, time.UTC)).ProtoReflect()))
		case f.Message() != nil && f.Message().FullName() == "google.protobuf.Duration":
			m.Set(f, protoreflect.ValueOfMessage(durationpb.New(math.MinInt64).ProtoReflect()))
		default:
			t.Fatalf("field %s (%s): teach this test, and sizeBound if it is variable-length, to fill it", f.Name(), f.Kind())
		}
	}
	tests := []struct {
		name string
		ev   Event
	}{
		{"every field at its largest", FromProto(full)},
		{"empty", Event{}},
		{"a stream event", testEvent(3, 42)},
		{"large headers", func() Event { ev := testEvent(0, 1); ev.Headers = largeHeaders(); return ev }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the event takes in a NotifyRequest: its tag, length and bytes.
			exact := proto.Size(&notifyv1.NotifyRequest{Events: []*notifyv1.DisconnectEvent{ToProto(tt.ev)}})
			if got := sizeBound(&tt.ev); got < exact {
				t.Errorf("sizeBound = %d, below the encoded size %d", got, exact)
			}
		})
	}
}
