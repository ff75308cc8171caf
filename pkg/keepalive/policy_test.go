package keepalive

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type op int

const (
	opTick      op = iota
	opFrame        // FrameRead
	opWrite        // HeadersOrDataWritten
	opPing         // PingReceived
	opAck          // PingAckReceived with the data of the last SendPing
	opAckDrain     // PingAckReceived with the data of the GoAwayGraceful ping
	opOpen         // StreamOpened
	opClose        // StreamClosed
	opDrain        // Drain with timeout arg
	opCheckOnly    // no call; only check the deadline
)

const noDeadline = time.Duration(-1)

// step is one call at t0+at. want lists the kinds returned, in order.
// reason and debug, when set, are checked on the last action. deadline, when
// not 0, is the expected Deadline() offset from t0 (noDeadline: zero time).
type step struct {
	at       time.Duration
	do       op
	arg      time.Duration
	want     []Kind
	reason   event.Reason
	debug    string
	deadline time.Duration
}

// slow is a config whose keepalive ping stays out of the way of the rules a
// case is about.
func slow() Config {
	c := DefaultConfig()
	c.Time = time.Hour
	return c
}

func half() float64 { return 0.5 }

// runSteps drives a Policy through steps and checks every result.
func runSteps(t *testing.T, cfg Config, rnd func() float64, steps []step) *Policy {
	t.Helper()
	if rnd == nil {
		rnd = half
	}
	p := New(cfg, t0, rnd)
	var lastPing, drainPing [8]byte
	for i, s := range steps {
		now := t0.Add(s.at)
		var acts []Action
		switch s.do {
		case opTick:
			acts = p.Tick(now)
		case opFrame:
			p.FrameRead(now)
		case opWrite:
			p.HeadersOrDataWritten(now)
		case opPing:
			acts = p.PingReceived(now)
		case opAck:
			acts = p.PingAckReceived(now, lastPing)
		case opAckDrain:
			acts = p.PingAckReceived(now, drainPing)
		case opOpen:
			p.StreamOpened(now)
		case opClose:
			acts = p.StreamClosed(now)
		case opDrain:
			acts = p.Drain(now, s.arg)
		case opCheckOnly:
		}
		var kinds []Kind
		for _, a := range acts {
			kinds = append(kinds, a.Kind)
			switch a.Kind {
			case SendPing:
				lastPing = a.Ping
			case GoAwayGraceful:
				drainPing = a.Ping
			}
		}
		if !slices.Equal(kinds, s.want) {
			t.Fatalf("step %d (op %d at %s): got actions %v, want %v", i, s.do, s.at, kinds, s.want)
		}
		if len(acts) > 0 {
			last := acts[len(acts)-1]
			if s.reason != 0 && last.Reason != s.reason {
				t.Errorf("step %d: reason %s, want %s", i, last.Reason, s.reason)
			}
			if s.debug != "" && last.Debug != s.debug {
				t.Errorf("step %d: debug %q, want %q", i, last.Debug, s.debug)
			}
		}
		switch d := p.Deadline(); {
		case s.deadline == noDeadline && !d.IsZero():
			t.Errorf("step %d: deadline %s, want none", i, d.Sub(t0))
		case s.deadline > 0 && !d.Equal(t0.Add(s.deadline)):
			t.Errorf("step %d: deadline %s, want %s", i, d.Sub(t0), s.deadline)
		}
	}
	return p
}

func k(kinds ...Kind) []Kind { return kinds }

const (
	sec    = time.Second
	minute = time.Minute
	ms     = time.Millisecond
)

func TestKeepalive(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"ping after Time of silence", []step{
			{at: 0, do: opCheckOnly, deadline: 30 * sec},
			{at: 30 * sec, do: opTick, want: k(SendPing), deadline: 40 * sec},
		}},
		{"early tick does nothing", []step{
			{at: 29*sec + 999*ms, do: opTick, deadline: 30 * sec},
			{at: 30 * sec, do: opTick, want: k(SendPing)},
		}},
		{"any frame read re-arms the ping", []step{
			{at: 20 * sec, do: opFrame, deadline: 50 * sec},
			{at: 30 * sec, do: opTick, deadline: 50 * sec},
			{at: 50 * sec, do: opTick, want: k(SendPing), deadline: 60 * sec},
		}},
		{"no ack and no frame within Timeout is dead", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 39*sec + 999*ms, do: opTick, deadline: 40 * sec},
			{at: 40 * sec, do: opTick, want: k(CloseDead), reason: event.ReasonKeepaliveTimeout, debug: DebugKeepaliveTimeout, deadline: noDeadline},
			{at: 50 * sec, do: opTick, deadline: noDeadline},
			{at: 50 * sec, do: opPing, deadline: noDeadline},
		}},
		{"ack in time keeps alive", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 35 * sec, do: opAck, deadline: 65 * sec},
			{at: 40 * sec, do: opTick, deadline: 65 * sec},
			{at: 65 * sec, do: opTick, want: k(SendPing), deadline: 75 * sec},
		}},
		{"any frame after the ping proves liveness", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 39 * sec, do: opFrame, deadline: 69 * sec},
			{at: 40 * sec, do: opTick},
		}},
		{"client ping counts as a frame read", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 31 * sec, do: opPing, deadline: 61 * sec},
			{at: 40 * sec, do: opTick},
		}},
		{"late tick sends a ping instead of closing", []step{
			{at: 100 * sec, do: opTick, want: k(SendPing), deadline: 110 * sec},
			{at: 110 * sec, do: opTick, want: k(CloseDead)},
		}},
		{"very late tick after the ping closes once", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 500 * sec, do: opTick, want: k(CloseDead)},
			{at: 600 * sec, do: opTick},
		}},
		{"time going backwards is clamped", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 25 * sec, do: opFrame, deadline: 60 * sec}, // read before the lock: counts at 30s
			{at: 40 * sec, do: opTick, deadline: 60 * sec},
		}},
		{"stale ack of an older ping is harmless", []step{
			{at: 30 * sec, do: opTick, want: k(SendPing)},
			{at: 31 * sec, do: opAck},
			{at: 61 * sec, do: opTick, want: k(SendPing)},
			{at: 62 * sec, do: opFrame},
			{at: 63 * sec, do: opAck}, // acks the 61s ping again
			{at: 93 * sec, do: opTick, want: k(SendPing)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, DefaultConfig(), nil, tt.steps)
		})
	}
}

func TestPingEnforcement(t *testing.T) {
	permit := slow()
	permit.PermitWithoutStream = true
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"pings MinTime apart never strike", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opPing},
			{at: 5*minute + 1*sec, do: opPing},
			{at: 10*minute + 1*sec, do: opPing},
			{at: 15*minute + 1*sec, do: opPing},
			{at: 20*minute + 1*sec, do: opPing},
		}},
		{"third strike sends too_many_pings", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opPing}, // first ping is free
			{at: 2 * sec, do: opPing}, // strike 1
			{at: 3 * sec, do: opPing}, // strike 2
			{at: 4 * sec, do: opPing, want: k(GoAwayTooManyPings), reason: event.ReasonPingAbuse, debug: DebugTooManyPings, deadline: noDeadline},
			{at: 5 * sec, do: opPing, deadline: noDeadline},
		}},
		{"just under MinTime is a strike", slow(), []step{
			{at: 0, do: opOpen},
			{at: 0, do: opPing},
			{at: 5*minute - 1, do: opPing},
			{at: 10*minute - 2, do: opPing},
			{at: 15*minute - 3, do: opPing, want: k(GoAwayTooManyPings)},
		}},
		{"headers or data written reset strikes", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opPing},
			{at: 2 * sec, do: opPing},
			{at: 3 * sec, do: opPing}, // 2 strikes
			{at: 3*sec + 500*ms, do: opWrite},
			{at: 4 * sec, do: opPing}, // resets to 0, not judged
			{at: 5 * sec, do: opPing},
			{at: 6 * sec, do: opPing},
			{at: 7 * sec, do: opPing, want: k(GoAwayTooManyPings)},
		}},
		{"write between every ping keeps a fast pinger alive", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opPing},
			{at: 1 * sec, do: opWrite},
			{at: 2 * sec, do: opPing},
			{at: 2 * sec, do: opWrite},
			{at: 3 * sec, do: opPing},
			{at: 3 * sec, do: opWrite},
			{at: 4 * sec, do: opPing},
			{at: 4 * sec, do: opWrite},
			{at: 5 * sec, do: opPing},
		}},
		{"no stream, not permitted: pings within 2h strike even beyond MinTime", slow(), []step{
			{at: 0, do: opPing},
			{at: 10 * minute, do: opPing},
			{at: 20 * minute, do: opPing},
			{at: 30 * minute, do: opPing, want: k(GoAwayTooManyPings)},
		}},
		{"no stream, not permitted: pings 2h apart are fine", slow(), []step{
			{at: 0, do: opPing},
			{at: 2 * time.Hour, do: opPing},
			{at: 4 * time.Hour, do: opPing},
			{at: 6 * time.Hour, do: opPing},
		}},
		{"no stream, permitted: MinTime applies", permit, []step{
			{at: 0, do: opPing},
			{at: 10 * minute, do: opPing},
			{at: 20 * minute, do: opPing},
			{at: 30 * minute, do: opPing},
			{at: 40 * minute, do: opPing},
		}},
		{"no stream, permitted: fast pings still strike", permit, []step{
			{at: 0, do: opPing},
			{at: 1 * sec, do: opPing},
			{at: 2 * sec, do: opPing},
			{at: 3 * sec, do: opPing, want: k(GoAwayTooManyPings)},
		}},
		{"strikes survive a stream opening", slow(), []step{
			{at: 0, do: opPing},
			{at: 10 * minute, do: opPing}, // no stream: strike 1
			{at: 10 * minute, do: opOpen},
			{at: 11 * minute, do: opPing},                              // under MinTime: strike 2
			{at: 12 * minute, do: opPing, want: k(GoAwayTooManyPings)}, // strike 3
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := runSteps(t, tt.cfg, nil, tt.steps)
			if p.strikes < 0 {
				t.Errorf("strikes %d < 0", p.strikes)
			}
		})
	}
}

func TestMaxIdle(t *testing.T) {
	cfg := slow()
	cfg.MaxConnectionIdle = time.Minute
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle from the start drains", []step{
			{at: 0, do: opCheckOnly, deadline: 1 * minute},
			{at: 1 * minute, do: opTick, want: k(GoAwayGraceful), reason: event.ReasonIdleTimeout, debug: DebugMaxIdle, deadline: 1*minute + 10*sec},
			{at: 1*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal, Close), reason: event.ReasonIdleTimeout, debug: DebugMaxIdle, deadline: noDeadline},
		}},
		{"an open stream keeps it from idling", []step{
			{at: 10 * sec, do: opOpen, deadline: 1 * time.Hour},
			{at: 1 * minute, do: opTick},
			{at: 2 * minute, do: opClose, deadline: 3 * minute},
			{at: 2*minute + 59*sec, do: opTick},
			{at: 3 * minute, do: opTick, want: k(GoAwayGraceful)},
		}},
		{"idle counts from the last stream closing", []step{
			{at: 0, do: opOpen},
			{at: 0, do: opOpen},
			{at: 30 * sec, do: opClose, deadline: 1 * time.Hour},
			{at: 50 * sec, do: opClose, deadline: 1*minute + 50*sec},
		}},
		{"no ack: final after Timeout, then close", []step{
			{at: 1 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 1*minute + 5*sec, do: opFrame},
			{at: 1*minute + 10*sec, do: opTick, want: k(GoAwayFinal, Close)},
		}},
		{"stream opened during phase 1 delays close", []step{
			{at: 1 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 1*minute + 100*ms, do: opOpen},
			{at: 1*minute + 200*ms, do: opAckDrain, want: k(GoAwayFinal)},
			{at: 5 * minute, do: opTick},
			{at: 6 * minute, do: opClose, want: k(Close), reason: event.ReasonIdleTimeout, deadline: noDeadline},
		}},
		{"unbalanced stream close is ignored", []step{
			{at: 10 * sec, do: opClose, deadline: 1 * minute},
			{at: 20 * sec, do: opOpen},
			{at: 30 * sec, do: opClose, deadline: 1*minute + 30*sec},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := runSteps(t, cfg, nil, tt.steps)
			if p.streams < 0 {
				t.Errorf("streams %d < 0", p.streams)
			}
		})
	}
}

func TestMaxAge(t *testing.T) {
	age := func(grace time.Duration) Config {
		c := slow()
		c.MaxConnectionAge = 10 * minute
		c.MaxConnectionAgeGrace = grace
		return c
	}
	tests := []struct {
		name  string
		cfg   Config
		rnd   func() float64
		steps []step
	}{
		{"two phases on ack, then close after grace", age(time.Minute), half, []step{
			{at: 1 * sec, do: opOpen, deadline: 10 * minute},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful), reason: event.ReasonMaxAge, debug: DebugMaxAge, deadline: 10*minute + 10*sec},
			{at: 10*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal), debug: DebugMaxAge, deadline: 11 * minute},
			{at: 10*minute + 59*sec, do: opTick},
			{at: 11 * minute, do: opTick, want: k(Close), reason: event.ReasonMaxAge, deadline: noDeadline},
		}},
		{"final after Timeout without ack", age(time.Minute), half, []step{
			{at: 1 * sec, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 10*minute + 5*sec, do: opFrame},
			{at: 10*minute + 9*sec, do: opTick},
			{at: 10*minute + 10*sec, do: opTick, want: k(GoAwayFinal), deadline: 11 * minute},
			{at: 10*minute + 20*sec, do: opClose, want: k(Close), reason: event.ReasonMaxAge},
		}},
		{"ack arriving in phase 2 changes nothing", age(time.Minute), half, []step{
			{at: 1 * sec, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 10*minute + 5*sec, do: opFrame},
			{at: 10*minute + 10*sec, do: opTick, want: k(GoAwayFinal)},
			{at: 10*minute + 11*sec, do: opAckDrain},
		}},
		{"no streams: close right after the final GOAWAY", age(0), half, []step{
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 10*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal, Close)},
		}},
		{"grace 0 waits for the streams", age(0), half, []step{
			{at: 1 * sec, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 10*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal), deadline: 1*time.Hour + 10*minute + 1*sec},
			{at: 1*time.Hour + 10*minute + 1*sec, do: opTick, want: k(SendPing)},
			{at: 1*time.Hour + 10*minute + 2*sec, do: opAck},
			{at: 2 * time.Hour, do: opClose, want: k(Close)},
		}},
		{"grace ending in phase 1 sends final then closes", age(5 * sec), half, []step{
			{at: 1 * sec, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful), deadline: 10*minute + 5*sec},
			{at: 10*minute + 3*sec, do: opFrame},
			{at: 10*minute + 5*sec, do: opTick, want: k(GoAwayFinal, Close), reason: event.ReasonMaxAge},
		}},
		{"dead client in phase 1 is CloseDead, not final", age(time.Minute), half, []step{
			{at: 1 * sec, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful)},
			{at: 10*minute + 10*sec, do: opTick, want: k(CloseDead), reason: event.ReasonKeepaliveTimeout},
		}},
		{"jitter low end: rnd 0 gives -10%", age(0), func() float64 { return 0 }, []step{
			{at: 0, do: opCheckOnly, deadline: 9 * minute},
			{at: 9*minute - 1, do: opTick},
			{at: 9 * minute, do: opTick, want: k(GoAwayGraceful)},
		}},
		{"jitter high end: rnd near 1 gives under +10%", age(0), func() float64 { return math.Nextafter(1, 0) }, []step{
			{at: 11*minute - time.Microsecond, do: opTick},
			{at: 11 * minute, do: opTick, want: k(GoAwayGraceful)},
		}},
		{"late tick catches up on age and ping at once", age(0), half, []step{
			{at: 2 * time.Hour, do: opTick, want: k(GoAwayGraceful)}, // its ping doubles as keepalive ping
			{at: 2*time.Hour + 10*sec, do: opTick, want: k(CloseDead)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, tt.cfg, tt.rnd, tt.steps)
		})
	}
}

func TestDrain(t *testing.T) {
	ageNoGrace := slow()
	ageNoGrace.MaxConnectionAge = 10 * minute
	idle := slow()
	idle.MaxConnectionIdle = time.Minute
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"no streams: two phases then close", slow(), []step{
			{at: 1 * sec, do: opDrain, arg: 30 * sec, want: k(GoAwayGraceful), reason: event.ReasonShutdown, debug: DebugShutdown, deadline: 11 * sec},
			{at: 2 * sec, do: opAckDrain, want: k(GoAwayFinal, Close), reason: event.ReasonShutdown},
		}},
		{"streams outliving the timeout get SHUTDOWN", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opDrain, arg: 30 * sec, want: k(GoAwayGraceful)},
			{at: 2 * sec, do: opAckDrain, want: k(GoAwayFinal), deadline: 31 * sec},
			{at: 31 * sec, do: opTick, want: k(Close), reason: event.ReasonShutdown, debug: DebugShutdown},
		}},
		{"streams ending in time close it early", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opDrain, arg: 30 * sec, want: k(GoAwayGraceful)},
			{at: 2 * sec, do: opAckDrain, want: k(GoAwayFinal)},
			{at: 20 * sec, do: opClose, want: k(Close), reason: event.ReasonShutdown},
		}},
		{"timeout 0 waits for the streams", slow(), []step{
			{at: 0, do: opOpen},
			{at: 1 * sec, do: opDrain, want: k(GoAwayGraceful)},
			{at: 2 * sec, do: opAckDrain, want: k(GoAwayFinal), deadline: 1*time.Hour + 2*sec},
		}},
		{"drain during a max-age drain bounds its infinite grace", ageNoGrace, []step{
			{at: 0, do: opOpen},
			{at: 10 * minute, do: opTick, want: k(GoAwayGraceful), reason: event.ReasonMaxAge},
			{at: 10*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal)},
			{at: 11 * minute, do: opDrain, arg: 30 * sec, deadline: 11*minute + 30*sec},
			{at: 11*minute + 30*sec, do: opTick, want: k(Close), reason: event.ReasonShutdown, debug: DebugShutdown},
		}},
		{"second drain: earlier deadline wins, later one is ignored", slow(), []step{
			{at: 0, do: opOpen},
			{at: 0, do: opDrain, arg: time.Minute, want: k(GoAwayGraceful)},
			{at: 1 * sec, do: opAckDrain, want: k(GoAwayFinal), deadline: 1 * minute},
			{at: 2 * sec, do: opDrain, arg: 10 * minute, deadline: 1 * minute},
			{at: 3 * sec, do: opDrain, arg: 10 * sec, deadline: 13 * sec},
			{at: 13 * sec, do: opTick, want: k(Close)},
		}},
		{"drain while an idle drain is in phase 1", idle, []step{
			{at: 1 * minute, do: opTick, want: k(GoAwayGraceful), reason: event.ReasonIdleTimeout},
			{at: 1*minute + 1*sec, do: opOpen},
			{at: 1*minute + 2*sec, do: opDrain, arg: 5 * sec, deadline: 1*minute + 7*sec},
			{at: 1*minute + 3*sec, do: opFrame},
			{at: 1*minute + 7*sec, do: opTick, want: k(GoAwayFinal, Close), reason: event.ReasonShutdown},
		}},
		{"max age after a shutdown drain adds nothing", ageNoGrace, []step{
			{at: 0, do: opOpen},
			{at: 9 * minute, do: opDrain, arg: 5 * minute, want: k(GoAwayGraceful)},
			{at: 9*minute + 1*sec, do: opAckDrain, want: k(GoAwayFinal)},
			{at: 10 * minute, do: opTick, deadline: 14 * minute},
			{at: 14 * minute, do: opTick, want: k(Close), reason: event.ReasonShutdown},
		}},
		{"drain after close does nothing", slow(), []step{
			{at: 0, do: opDrain, want: k(GoAwayGraceful)},
			{at: 1 * sec, do: opAckDrain, want: k(GoAwayFinal, Close)},
			{at: 2 * sec, do: opDrain, deadline: noDeadline},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, tt.cfg, nil, tt.steps)
		})
	}
}

func TestOwnPings(t *testing.T) {
	p := New(DefaultConfig(), t0, half)
	var seen [][8]byte
	now := t0
	for range 5 {
		now = now.Add(DefaultTime)
		acts := p.Tick(now)
		if len(acts) != 1 || acts[0].Kind != SendPing {
			t.Fatalf("tick at %s: got %v, want one SendPing", now.Sub(t0), acts)
		}
		if slices.Contains(seen, acts[0].Ping) {
			t.Fatalf("ping data %x sent twice", acts[0].Ping)
		}
		seen = append(seen, acts[0].Ping)
		p.PingAckReceived(now, acts[0].Ping)
	}
	for _, d := range seen {
		if !p.IsOwnPing(d) {
			t.Errorf("IsOwnPing(%x) = false for a ping it sent", d)
		}
	}
	tests := []struct {
		name string
		data [8]byte
	}{
		{"zero", [8]byte{}},
		{"grpc-go goaway ping", [8]byte{1, 6, 1, 8, 0, 3, 3, 9}},
		{"tag with counter 0", [8]byte{'h', 'g', 'u', 'p', 0, 0, 0, 0}},
		{"tag with a counter not sent yet", [8]byte{'h', 'g', 'u', 'p', 0, 0, 0, 6}},
		{"other tag", [8]byte{'h', 'g', 'u', 'q', 0, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p.IsOwnPing(tt.data) {
				t.Errorf("IsOwnPing(%x) = true, want false", tt.data)
			}
		})
	}
}

func TestMaxAgeJitterProperty(t *testing.T) {
	const age = 10 * time.Minute
	lo, hi := age-age/10, age+age/10
	check := func(t *testing.T, r float64) {
		t.Helper()
		if j := jittered(age, r); j < lo || j > hi {
			t.Fatalf("jittered(%s, %v) = %s, outside [%s, %s]", age, r, j, lo, hi)
		}
	}
	for i := range 10001 {
		check(t, float64(i)/10000)
	}
	src := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		check(t, src.Float64())
	}
	for _, r := range []float64{-1, 2, math.NaN(), math.Inf(1), math.Inf(-1), math.Nextafter(1, 0)} {
		check(t, r)
	}
	// Through New, with a spread actually used: both halves are reached.
	var below, above bool
	for range 1000 {
		p := New(Config{Time: time.Hour, Timeout: sec, MinTime: sec, MaxConnectionAge: age}, t0, src.Float64)
		d := p.timeOf(p.ageAt).Sub(t0)
		if d < lo || d > hi {
			t.Fatalf("age deadline %s outside [%s, %s]", d, lo, hi)
		}
		below = below || d < age
		above = above || d > age
	}
	if !below || !above {
		t.Errorf("jitter never went both ways: below %v, above %v", below, above)
	}
	if p := New(Config{Time: time.Hour, Timeout: sec, MinTime: sec, MaxConnectionAge: age}, t0, nil); p.timeOf(p.ageAt).Sub(t0) < lo || p.timeOf(p.ageAt).Sub(t0) > hi {
		t.Errorf("nil rnd: age deadline %s outside [%s, %s]", p.timeOf(p.ageAt).Sub(t0), lo, hi)
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{None, "None"}, {SendPing, "SendPing"}, {GoAwayGraceful, "GoAwayGraceful"},
		{GoAwayFinal, "GoAwayFinal"}, {GoAwayTooManyPings, "GoAwayTooManyPings"},
		{CloseDead, "CloseDead"}, {Close, "Close"}, {SendRTTPing, "SendRTTPing"}, {Kind(42), "Kind(42)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// The calls made for every frame must not allocate (DESIGN: per-frame
// bookkeeping allocates nothing in the steady state).
func TestPerFrameCallsDoNotAllocate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConnectionIdle = time.Minute
	p := New(cfg, t0, half)
	now := t0
	tests := []struct {
		name string
		call func()
	}{
		{"FrameRead", func() { now = now.Add(time.Millisecond); p.FrameRead(now) }},
		{"HeadersOrDataWritten", func() { p.HeadersOrDataWritten(now) }},
		{"StreamOpened and StreamClosed", func() { p.StreamOpened(now); p.StreamClosed(now) }},
		{"PingReceived within policy", func() { p.HeadersOrDataWritten(now); p.PingReceived(now) }},
		{"Tick early", func() { p.Tick(now) }},
		{"PingAckReceived of a timed PING", func() {
			now = now.Add(time.Millisecond)
			if acts := p.PrefaceSent(now); len(acts) == 1 {
				p.PingAckReceived(now, acts[0].Ping)
			}
		}},
		{"Deadline", func() { p.Deadline() }},
		{"IsOwnPing", func() { p.IsOwnPing([8]byte{'h', 'g', 'u', 'p', 0, 0, 0, 1}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.call); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tt.name, n)
			}
		})
	}
}

// TestInstantAdd checks the saturating addition the policy's deadlines
// use: a duration far beyond any connection's life must give a deadline
// that never comes, not one wrapped into the past.
func TestInstantAdd(t *testing.T) {
	tests := []struct {
		name string
		i    instant
		d    time.Duration
		want instant
	}{
		{"start plus a second", 0, time.Second, instant(time.Second)},
		{"zero duration", 42, 0, 42},
		{"just fits", math.MaxInt64 - 10, 10, math.MaxInt64},
		{"saturates", math.MaxInt64 - 10, 11, math.MaxInt64},
		{"saturates from later", instant(time.Hour), math.MaxInt64, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.i.add(tt.d); got != tt.want {
				t.Errorf("%d.add(%d) = %d, want %d", tt.i, tt.d, got, tt.want)
			}
		})
	}
}

// TestDeadlineFarAway checks that a policy whose durations reach past
// what int64 nanoseconds can add to its instants still puts its next
// deadline in the future.
func TestDeadlineFarAway(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New(Config{Time: math.MaxInt64, Timeout: math.MaxInt64, MinTime: time.Second}, t0, nil)
	p.FrameRead(t0.Add(time.Hour))
	if d := p.Deadline(); !d.After(t0.Add(time.Hour)) {
		t.Errorf("Deadline() = %v, want after %v", d, t0.Add(time.Hour))
	}
	if acts := p.Tick(t0.Add(2 * time.Hour)); len(acts) != 0 {
		t.Errorf("Tick two hours in = %v, want nothing", acts)
	}
}
