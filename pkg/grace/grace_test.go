package grace

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

// fakeTimer is the injected timer: it records the armed deadline, and the
// test fires it by advancing the fake clock.
type fakeTimer struct {
	now   time.Time
	armed bool
	at    time.Time
	fire  func()
	arms  int // timers started
}

func (f *fakeTimer) afterFunc(d time.Duration, fn func()) func() bool {
	f.armed, f.at, f.fire = true, f.now.Add(d), fn
	f.arms++
	return func() bool { was := f.armed; f.armed = false; return was }
}

// advance moves the clock by d and fires the timer if it is due.
func (f *fakeTimer) advance(d time.Duration) {
	f.now = f.now.Add(d)
	if f.armed && !f.at.After(f.now) {
		f.armed = false
		f.fire()
	}
}

// t0 is the fake clock's start.
var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// newTestGrace returns a Grace with rules, on a fake clock at t0 and timer,
// forwarding to a recorder.
func newTestGrace(t *testing.T, rules string, maxHeld int) (*Grace, *fakeTimer, *recorder) {
	t.Helper()
	r, err := ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTimer{now: t0}
	rec := &recorder{}
	g := newGrace(Config{Rules: r, SessionHeader: "x-session-id", MaxHeld: maxHeld, Now: func() time.Time { return ft.now }}, rec, ft.afterFunc)
	return g, ft, rec
}

// recorder is the next Sink.
type recorder struct{ got []event.Event }

func (r *recorder) Publish(ev event.Event) { r.got = append(r.got, ev) }

// summary is one forwarded event in a comparable form:
// "SCOPE REASON conn/stream [-> conn/stream] @detected".
func summary(ev event.Event, t0 time.Time) string {
	s := fmt.Sprintf("%s %s %s/%d", ev.Scope, ev.Reason, ev.ConnectionID, ev.StreamID)
	if ev.Reason == event.ReasonResumed {
		s += fmt.Sprintf(" -> %s/%d", ev.ResumedConnectionID, ev.ResumedStreamID)
	}
	return s + " @" + ev.DetectedAt.Sub(t0).String()
}

const (
	chat  = "/chat.v1.Chat/Subscribe"
	game  = "/game.v1.Game/Play"
	plain = "/plain.v1.Plain/Call"
)

// loss returns the events of a connection lost at t with streams on the
// given methods, each with its session key ("" for none), as the relay
// publishes them: the streams' events, then the connection's.
func loss(conn string, reason event.Reason, at time.Time, streams ...[2]string) []event.Event {
	var evs []event.Event
	for i, s := range streams {
		evs = append(evs, event.Event{ID: fmt.Sprintf("%s-s%d", conn, i), Scope: event.ScopeStream, Reason: reason,
			Initiator: event.InitiatorClient, ConnectionID: conn, StreamID: uint32(2*i + 1), Method: s[0],
			SessionKey: s[1], StartedAt: at.Add(-time.Minute), DetectedAt: at})
	}
	return append(evs, event.Event{ID: conn + "-c", Scope: event.ScopeConnection, Reason: reason,
		Initiator: event.InitiatorClient, ConnectionID: conn, DetectedAt: at})
}

// startedAt sets the start of every stream in evs.
func startedAt(at time.Time, evs []event.Event) []event.Event {
	for i := range evs {
		if evs[i].Scope == event.ScopeStream {
			evs[i].StartedAt = at
		}
	}
	return evs
}

// step is one thing that happens to the Grace, in order.
type step struct {
	advance time.Duration // first move the clock (and fire the timer when due)
	publish []event.Event
	open    *openStep // a new stream
	close   bool
	want    []string // summaries of every event forwarded after this step, in order
}

type openStep struct {
	method, key, conn string
	stream            uint32
}

func TestGrace(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		stats Stats
	}{
		{"resumed inside the grace", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})},
			{advance: 9 * time.Second, open: &openStep{chat, "s1", "c2", 1},
				want: []string{"STREAM RESUMED c1/1 -> c2/1 @0s"}},
			{advance: time.Minute},
		}, Stats{Held: 1, Resumed: 1}},
		{"expired outside the grace", []step{
			{publish: loss("c1", event.ReasonKeepaliveTimeout, t0, [2]string{chat, "s1"})},
			{advance: 9 * time.Second},
			{advance: time.Second, want: []string{"STREAM KEEPALIVE_TIMEOUT c1/1 @0s", "CONNECTION KEEPALIVE_TIMEOUT c1/0 @0s"}},
			{advance: time.Second, open: &openStep{chat, "s1", "c2", 1}},
		}, Stats{Held: 1, Expired: 1}},
		{"two sessions", []step{
			{publish: loss("c1", event.ReasonConnectionClosed, t0, [2]string{chat, "s1"})},
			{publish: loss("c2", event.ReasonConnectionClosed, t0, [2]string{chat, "s2"})},
			{advance: time.Second, open: &openStep{chat, "s2", "c3", 1}, want: []string{"STREAM RESUMED c2/1 -> c3/1 @0s"}},
			{advance: 9 * time.Second, want: []string{"STREAM CONNECTION_CLOSED c1/1 @0s", "CONNECTION CONNECTION_CLOSED c1/0 @0s"}},
		}, Stats{Held: 2, Resumed: 1, Expired: 1}},
		{"a different key resumes nothing", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})},
			{advance: time.Second, open: &openStep{chat, "other", "c2", 1}},
			{advance: 9 * time.Second, want: []string{"STREAM CONNECTION_RESET c1/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{Held: 1, Expired: 1}},
		{"a method without grace is sent at once", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{plain, "s1"}),
				want: []string{"STREAM CONNECTION_RESET c1/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{}},
		{"a stream without a session key is sent at once", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, ""}),
				want: []string{"STREAM CONNECTION_RESET c1/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{}},
		{"a stream-scope loss is never held", []step{
			{publish: []event.Event{{ID: "r", Scope: event.ScopeStream, Reason: event.ReasonRSTStream, ConnectionID: "c1",
				StreamID: 1, Method: chat, SessionKey: "s1", DetectedAt: t0}},
				want: []string{"STREAM RST_STREAM c1/1 @0s"}},
		}, Stats{}},
		{"GOAWAY and SHUTDOWN are never held", []step{
			{publish: loss("c1", event.ReasonGoAway, t0, [2]string{chat, "s1"}),
				want: []string{"STREAM GOAWAY c1/1 @0s", "CONNECTION GOAWAY c1/0 @0s"}},
			{publish: loss("c2", event.ReasonShutdown, t0, [2]string{chat, "s2"}),
				want: []string{"STREAM SHUTDOWN c2/1 @0s", "CONNECTION SHUTDOWN c2/0 @0s"}},
		}, Stats{}},
		{"shutdown flushes what is held, unchanged", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})},
			{advance: 2 * time.Second, publish: loss("c2", event.ReasonKeepaliveTimeout, t0.Add(2*time.Second), [2]string{game, "s2"})},
			{close: true, want: []string{
				"STREAM KEEPALIVE_TIMEOUT c2/1 @2s", "CONNECTION KEEPALIVE_TIMEOUT c2/0 @2s", // 5s grace: first deadline
				"STREAM CONNECTION_RESET c1/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
			{publish: loss("c3", event.ReasonConnectionReset, t0, [2]string{chat, "s3"}),
				want: []string{"STREAM CONNECTION_RESET c3/1 @0s", "CONNECTION CONNECTION_RESET c3/0 @0s"}},
		}, Stats{Held: 2, Expired: 2}},
		{"per-method grace: the service rule", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{game, "s1"})},
			{advance: 5 * time.Second, want: []string{"STREAM CONNECTION_RESET c1/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{Held: 1, Expired: 1}},
		{"the connection event waits for its last stream", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"}, [2]string{game, "s1"})},
			{advance: time.Second, open: &openStep{game, "s1", "c2", 1}, want: []string{"STREAM RESUMED c1/3 -> c2/1 @0s"}},
			{advance: time.Second, open: &openStep{chat, "s1", "c2", 3}, want: []string{"STREAM RESUMED c1/1 -> c2/3 @0s"}},
			{advance: time.Minute},
		}, Stats{Held: 2, Resumed: 2}},
		{"one stream resumed, one expired: the connection event is sent", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"}, [2]string{chat, "s2"})},
			{advance: time.Second, open: &openStep{chat, "s1", "c2", 1}, want: []string{"STREAM RESUMED c1/1 -> c2/1 @0s"}},
			{advance: 9 * time.Second, want: []string{"STREAM CONNECTION_RESET c1/3 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{Held: 2, Resumed: 1, Expired: 1}},
		{"a stream without grace on the same connection: the connection event is sent", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"}, [2]string{plain, "s1"}),
				want: []string{"STREAM CONNECTION_RESET c1/3 @0s"}},
			{advance: time.Second, open: &openStep{chat, "s1", "c2", 1},
				want: []string{"STREAM RESUMED c1/1 -> c2/1 @0s", "CONNECTION CONNECTION_RESET c1/0 @0s"}},
		}, Stats{Held: 1, Resumed: 1}},
		{"reconnected before the old connection was found dead", []step{
			{advance: 2 * time.Minute, open: &openStep{chat, "s1", "c2", 1}},
			{advance: 8 * time.Second, publish: loss("c1", event.ReasonKeepaliveTimeout, t0.Add(2*time.Minute+8*time.Second), [2]string{chat, "s1"}),
				want: []string{"STREAM RESUMED c1/1 -> c2/1 @2m8s"}},
			{advance: time.Minute},
		}, Stats{Held: 1, Resumed: 1}},
		{"a reconnection longer ago than the grace resumes nothing", []step{
			{advance: 2 * time.Minute, open: &openStep{chat, "s1", "c2", 1}},
			{advance: 11 * time.Second, publish: loss("c1", event.ReasonKeepaliveTimeout, t0.Add(2*time.Minute+11*time.Second), [2]string{chat, "s1"})},
			{advance: 10 * time.Second, want: []string{"STREAM KEEPALIVE_TIMEOUT c1/1 @2m11s", "CONNECTION KEEPALIVE_TIMEOUT c1/0 @2m11s"}},
		}, Stats{Held: 1, Expired: 1}},
		{"a stream older than the lost one resumes nothing", []step{
			{open: &openStep{chat, "s1", "c2", 1}},
			{advance: 5 * time.Second, publish: startedAt(t0.Add(time.Second),
				loss("c1", event.ReasonKeepaliveTimeout, t0.Add(5*time.Second), [2]string{chat, "s1"}))},
			{advance: 10 * time.Second, want: []string{"STREAM KEEPALIVE_TIMEOUT c1/1 @5s", "CONNECTION KEEPALIVE_TIMEOUT c1/0 @5s"}},
		}, Stats{Held: 1, Expired: 1}},
		{"a stream on the lost connection itself resumes nothing", []step{
			{advance: 2 * time.Minute, open: &openStep{chat, "s1", "c1", 3}},
			{publish: loss("c1", event.ReasonConnectionReset, t0.Add(2*time.Minute), [2]string{chat, "s1"})},
			{advance: 10 * time.Second, want: []string{"STREAM CONNECTION_RESET c1/1 @2m0s", "CONNECTION CONNECTION_RESET c1/0 @2m0s"}},
		}, Stats{Held: 1, Expired: 1}},
		{"a session's held stream resumes once", []step{
			{publish: loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})},
			{advance: time.Second, open: &openStep{chat, "s1", "c2", 1}, want: []string{"STREAM RESUMED c1/1 -> c2/1 @0s"}},
			{open: &openStep{chat, "s1", "c3", 1}},
		}, Stats{Held: 1, Resumed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, ft, rec := newTestGrace(t, chat+"=10s,/game.v1.Game/*=5s", 0)
			for i, st := range tt.steps {
				rec.got = nil
				ft.advance(st.advance)
				for _, ev := range st.publish {
					g.Publish(ev)
				}
				if st.open != nil {
					g.StreamOpened(st.open.method, st.open.key, st.open.conn, st.open.stream)
				}
				if st.close {
					g.Close()
				}
				var got []string
				for _, ev := range rec.got {
					got = append(got, summary(ev, t0))
				}
				if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
					t.Fatalf("step %d forwarded\n  %s\nwant\n  %s", i, strings.Join(got, "\n  "), strings.Join(st.want, "\n  "))
				}
			}
			if got := g.Stats(); got != tt.stats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
			}
		})
	}
}

// TestResumedEventNamesBothStreams checks the fields of a RESUMED event: the
// old stream's, the new stream's and when it arrived; a new id.
func TestResumedEventNamesBothStreams(t *testing.T) {
	g, ft, rec := newTestGrace(t, chat+"=10s", 0)
	lost := loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})
	for _, ev := range lost {
		g.Publish(ev)
	}
	ft.advance(3 * time.Second)
	g.StreamOpened(chat, "s1", "c2", 5)
	if len(rec.got) != 1 {
		t.Fatalf("forwarded %d events, want 1", len(rec.got))
	}
	got, old := rec.got[0], lost[0]
	if got.ID == "" || got.ID == old.ID {
		t.Errorf("ID = %q, want a new id (held event %q)", got.ID, old.ID)
	}
	want := old
	want.ID, want.Reason = got.ID, event.ReasonResumed
	want.ResumedConnectionID, want.ResumedStreamID, want.ResumedAt = "c2", 5, t0.Add(3*time.Second)
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("RESUMED event =\n%+v\nwant\n%+v", got, want)
	}
	if ft.armed {
		t.Error("the timer is still armed with nothing held")
	}
}

// TestMaxHeld checks the bound: the event closest to its deadline is sent
// at once, unchanged, and counted as expired.
func TestMaxHeld(t *testing.T) {
	g, ft, rec := newTestGrace(t, chat+"=10s", 2)
	for i := range 3 {
		ft.advance(time.Second)
		g.Publish(loss(fmt.Sprintf("c%d", i), event.ReasonConnectionReset, ft.now, [2]string{chat, fmt.Sprintf("s%d", i)})[0])
	}
	if len(rec.got) != 1 || rec.got[0].ConnectionID != "c0" || rec.got[0].Reason != event.ReasonConnectionReset {
		t.Fatalf("forwarded %+v, want c0's event unchanged", rec.got)
	}
	if st := g.Stats(); st.Holding != 2 || st.Expired != 1 || st.Held != 3 {
		t.Errorf("Stats() = %+v, want 3 held, 1 expired, 2 holding", st)
	}
}

// TestStaleTimerIsIgnored: a timer stopped after its func started (the
// race time.Timer.Stop leaves) must neither send early nor start a second
// timer.
func TestStaleTimerIsIgnored(t *testing.T) {
	g, ft, rec := newTestGrace(t, chat+"=10s,/game.v1.Game/*=5s", 0)
	g.Publish(loss("c1", event.ReasonConnectionReset, t0, [2]string{chat, "s1"})[0])
	stale := ft.fire
	g.Publish(loss("c2", event.ReasonConnectionReset, t0, [2]string{game, "s2"})[0]) // earlier deadline: re-armed
	arms := ft.arms
	ft.now = ft.now.Add(6 * time.Second)
	stale()
	if len(rec.got) != 0 || ft.arms != arms {
		t.Fatalf("a stale timer sent %d events and started %d timers, want none", len(rec.got), ft.arms-arms)
	}
	ft.advance(0)
	if len(rec.got) != 1 || rec.got[0].ConnectionID != "c2" {
		t.Fatalf("the live timer sent %+v, want c2's event", rec.got)
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]time.Duration // method → grace
		wantErr  string
	}{
		{"empty", "", map[string]time.Duration{chat: 0}, ""},
		{"method and service", chat + "=10s, /game.v1.Game/*=5s", map[string]time.Duration{chat: 10 * time.Second,
			"/chat.v1.Chat/Other": 0, game: 5 * time.Second, plain: 0, "": 0, "nonsense": 0}, ""},
		{"the method wins over its service", "/chat.v1.Chat/*=3s," + chat + "=10s",
			map[string]time.Duration{chat: 10 * time.Second, "/chat.v1.Chat/Other": 3 * time.Second}, ""},
		{"no =", chat, nil, `rule "/chat.v1.Chat/Subscribe" has no '='`},
		{"bad duration", chat + "=soon", nil, `grace "soon" is not a duration`},
		{"zero", chat + "=0s", nil, `grace "0s" is not a duration above 0s`},
		{"too long", chat + "=2h", nil, `at most 1h0m0s`},
		{"no leading slash", "chat.v1.Chat/Subscribe=1s", nil, `method "chat.v1.Chat/Subscribe" is not /pkg.Service/Method`},
		{"no method", "/chat.v1.Chat/=1s", nil, `is not /pkg.Service/Method`},
		{"a wildcard service", "/*/*=1s", nil, `is not /pkg.Service/Method`},
		{"a partial wildcard", "/chat.v1.Chat/Sub*=1s", nil, `is not /pkg.Service/Method`},
		{"twice", chat + "=1s," + chat + "=2s", nil, `is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRules(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRules(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRules(%q): %v", tt.in, err)
			}
			for m, want := range tt.want {
				if got := r.For(m); got != want {
					t.Errorf("For(%q) = %v, want %v", m, got, want)
				}
			}
			back, err := ParseRules(r.String())
			if err != nil || back.String() != r.String() {
				t.Errorf("ParseRules(String()) = %q, %v; want %q", back.String(), err, r.String())
			}
		})
	}
}

// TestForDoesNotAllocate: the relay asks For on every new stream when
// grace is configured.
func TestForDoesNotAllocate(t *testing.T) {
	r, err := ParseRules(chat + "=10s,/game.v1.Game/*=5s")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{chat, game, plain} {
		if n := testing.AllocsPerRun(100, func() { r.For(m) }); n != 0 {
			t.Errorf("For(%q) allocates %v times, want 0", m, n)
		}
	}
}

func TestCheckSessionHeader(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"plain", "x-session-id", ""},
		{"upper case", "X-Session-Id", ""},
		{"empty", "", "empty"},
		{"pseudo", ":path", "never by the client"},
		{"the sidecar's own", "x-hangup-stream-id", "never by the client"},
		{"a space", "x session", "not a header name"},
		{"a colon", "x:session", "not a header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSessionHeader(tt.in)
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CheckSessionHeader(%q) = %v, want %q", tt.in, err, tt.wantErr)
			}
		})
	}
}
