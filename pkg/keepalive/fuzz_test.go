package keepalive

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

// fuzzModel follows the events independently of the Policy and checks its
// actions against the rules.
type fuzzModel struct {
	t   *testing.T
	p   *Policy
	cfg Config

	now             time.Time // latest time passed in (the policy's clock)
	firstUnanswered time.Time // first of our pings sent since the last frame read
	lastPingSeq     [8]byte
	ackedSeq        uint32 // the highest of our pings acknowledged
	prefaceAsked    bool
	drainPing       [8]byte
	streams         int
	idleSince       time.Time
	graceful, final bool
	ageGoAwayAt     time.Time
	finished        bool
}

func (m *fuzzModel) advance(now time.Time) {
	if now.After(m.now) {
		m.now = now
	}
}

func (m *fuzzModel) frameRead() { m.firstUnanswered = time.Time{} }

// seq is the counter in the data of one of our pings.
func seq(data [8]byte) uint32 { return binary.BigEndian.Uint32(data[4:]) }

// acked records the ACK of data, as a peer that answers in order sends it.
func (m *fuzzModel) acked(data [8]byte) {
	if s := seq(data); s <= seq(m.lastPingSeq) {
		m.ackedSeq = max(m.ackedSeq, s)
	}
}

// check verifies the actions returned by the call named by who.
func (m *fuzzModel) check(who string, acts []Action) {
	t := m.t
	for _, a := range acts {
		if m.finished {
			t.Fatalf("%s at %s: action %v after a terminal action", who, m.now.Sub(t0), a.Kind)
		}
		switch a.Kind {
		case None:
			t.Fatalf("%s: None inside an action slice", who)
		case SendPing, GoAwayGraceful, SendRTTPing:
			if !m.p.IsOwnPing(a.Ping) {
				t.Fatalf("%s: ping %x not recognised as own", who, a.Ping)
			}
			if string(a.Ping[:]) <= string(m.lastPingSeq[:]) {
				t.Fatalf("%s: ping %x not newer than %x", who, a.Ping, m.lastPingSeq)
			}
			unanswered := seq(m.lastPingSeq) > m.ackedSeq
			m.lastPingSeq = a.Ping
			if a.Kind == SendRTTPing {
				// Only to measure: never beside an unanswered ping of
				// ours, and no part of the keepalive timeout.
				if unanswered {
					t.Fatalf("%s at %s: SendRTTPing while ping %d is unanswered (acked up to %d)", who, m.now.Sub(t0), seq(m.lastPingSeq)-1, m.ackedSeq)
				}
				break
			}
			if m.firstUnanswered.IsZero() {
				m.firstUnanswered = m.now
			}
		}
		switch a.Kind {
		case SendPing:
			if who != "Tick" {
				t.Fatalf("%s: SendPing outside Tick", who)
			}
		case SendRTTPing:
			switch {
			case who == "PrefaceSent" && (m.prefaceAsked || seq(a.Ping) != 1):
				t.Fatalf("PrefaceSent: SendRTTPing %d, not the first ping of a first call", seq(a.Ping))
			case who == "Tick" && m.cfg.RTTInterval == 0:
				t.Fatalf("Tick: SendRTTPing with rtt-interval off")
			case who != "Tick" && who != "PrefaceSent":
				t.Fatalf("%s: SendRTTPing outside Tick and PrefaceSent", who)
			}
		case GoAwayGraceful:
			if m.graceful {
				t.Fatalf("%s: second GoAwayGraceful", who)
			}
			m.graceful = true
			m.drainPing = a.Ping
			switch a.Reason {
			case event.ReasonIdleTimeout:
				if m.streams != 0 || m.cfg.MaxConnectionIdle == 0 || m.now.Sub(m.idleSince) < m.cfg.MaxConnectionIdle {
					t.Fatalf("idle GOAWAY at %s with %d streams, idle since %s, max %s",
						m.now.Sub(t0), m.streams, m.idleSince.Sub(t0), m.cfg.MaxConnectionIdle)
				}
			case event.ReasonMaxAge:
				if m.cfg.MaxConnectionAge == 0 || m.now.Sub(t0) < m.cfg.MaxConnectionAge-m.cfg.MaxConnectionAge/10 {
					t.Fatalf("max-age GOAWAY at %s, max age %s", m.now.Sub(t0), m.cfg.MaxConnectionAge)
				}
				m.ageGoAwayAt = m.now
			case event.ReasonShutdown:
				if who != "Drain" {
					t.Fatalf("%s: shutdown GOAWAY outside Drain", who)
				}
			default:
				t.Fatalf("%s: GoAwayGraceful with reason %s", who, a.Reason)
			}
		case GoAwayFinal:
			if !m.graceful || m.final {
				t.Fatalf("%s: GoAwayFinal with graceful=%v final=%v", who, m.graceful, m.final)
			}
			m.final = true
		case GoAwayTooManyPings:
			if who != "PingReceived" {
				t.Fatalf("%s: GoAwayTooManyPings outside PingReceived", who)
			}
			m.finished = true
		case CloseDead:
			if who != "Tick" {
				t.Fatalf("%s: CloseDead outside Tick", who)
			}
			if m.firstUnanswered.IsZero() || m.now.Sub(m.firstUnanswered) < m.cfg.Timeout {
				t.Fatalf("CloseDead at %s: first unanswered ping at %s, timeout %s",
					m.now.Sub(t0), m.firstUnanswered.Sub(t0), m.cfg.Timeout)
			}
			m.finished = true
		case Close:
			if !m.final {
				t.Fatalf("%s: Close before GoAwayFinal", who)
			}
			if m.streams > 0 && a.Reason == event.ReasonMaxAge &&
				(m.cfg.MaxConnectionAgeGrace == 0 || m.now.Sub(m.ageGoAwayAt) < m.cfg.MaxConnectionAgeGrace) {
				t.Fatalf("max-age Close at %s with %d streams: GOAWAY at %s, grace %s",
					m.now.Sub(t0), m.streams, m.ageGoAwayAt.Sub(t0), m.cfg.MaxConnectionAgeGrace)
			}
			m.finished = true
		}
	}
	if who == "PrefaceSent" {
		m.prefaceAsked = true
	}
	if r := m.p.RTT(); r.Known() && (r.Min > r.Last || r.Min > r.Smoothed || r.Min < 0) {
		t.Fatalf("%s: RTT %+v: the minimum must be the smallest", who, r)
	}
	if m.p.strikes < 0 || m.p.streams < 0 {
		t.Fatalf("negative counters: strikes %d, streams %d", m.p.strikes, m.p.streams)
	}
	if m.p.streams != m.streams {
		t.Fatalf("policy counts %d streams, model %d", m.p.streams, m.streams)
	}
	d := m.p.Deadline()
	if m.finished != d.IsZero() {
		t.Fatalf("%s: finished %v but deadline %v", who, m.finished, d)
	}
	if who == "Tick" && !d.IsZero() && !d.After(m.now) {
		t.Fatalf("after Tick(%s) deadline %s is not later", m.now.Sub(t0), d.Sub(t0))
	}
}

// FuzzPolicy feeds random event sequences to a Policy. The first 6 bytes pick
// the config; then each pair (op, arg) is one event.
func FuzzPolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 6 {
			return
		}
		c := data[:6]
		cfg := Config{
			Time:                time.Duration(1+int(c[0])%60) * time.Second,
			Timeout:             time.Duration(1+int(c[1])%30) * time.Second,
			MinTime:             time.Duration(1+int(c[2])%120) * time.Second,
			PermitWithoutStream: c[3]&1 != 0,
		}
		if c[3]&2 != 0 {
			cfg.MaxConnectionIdle = time.Duration(1+int(c[4])%120) * time.Second
		}
		if c[3]&4 != 0 {
			cfg.MaxConnectionAge = time.Duration(1+int(c[5])%240) * time.Second
		}
		if c[3]&8 != 0 {
			cfg.MaxConnectionAgeGrace = time.Duration(1+int(c[4])%60) * time.Second
		}
		if c[3]&16 != 0 {
			cfg.RTTInterval = time.Duration(1+int(c[0])%10) * time.Second
		}
		r := float64(c[5]) / 256
		p := New(cfg, t0, func() float64 { return r })
		m := &fuzzModel{t: t, p: p, cfg: cfg, now: t0, idleSince: t0}
		now := t0
		for ev := data[6:]; len(ev) >= 2; ev = ev[2:] {
			opb, arg := ev[0], ev[1]
			step := time.Duration(arg) * 100 * time.Millisecond
			switch {
			case opb&0x80 != 0:
				step = time.Duration(arg) * time.Minute
			case opb&0x40 != 0:
				step = -time.Duration(arg) * 10 * time.Millisecond // a caller that read the clock early
			}
			now = now.Add(step)
			if d := p.Deadline(); opb%10 == 1 && d.After(m.now) {
				now = d // exactly on time
			}
			m.advance(now)
			switch opb % 10 {
			case 0, 1:
				m.check("Tick", p.Tick(now))
			case 2:
				p.FrameRead(now)
				m.frameRead()
				m.check("FrameRead", nil)
			case 3:
				if arg&1 != 0 {
					m.check("PrefaceSent", p.PrefaceSent(now))
					break
				}
				p.HeadersOrDataWritten(now)
				m.check("HeadersOrDataWritten", nil)
			case 4:
				m.frameRead()
				m.check("PingReceived", p.PingReceived(now))
			case 5:
				m.frameRead()
				m.acked(m.lastPingSeq)
				m.check("PingAckReceived", p.PingAckReceived(now, m.lastPingSeq))
			case 6:
				m.frameRead()
				ack := m.drainPing
				if arg&1 != 0 {
					ack = [8]byte{'h', 'g', 'u', 'p', 0, 0, arg, arg}
				}
				m.acked(ack)
				m.check("PingAckReceived", p.PingAckReceived(now, ack))
			case 7:
				p.StreamOpened(now)
				m.streams++
				m.idleSince = time.Time{}
				m.check("StreamOpened", nil)
			case 8:
				acts := p.StreamClosed(now)
				if m.streams > 0 {
					m.streams--
					if m.streams == 0 {
						m.idleSince = m.now
					}
				}
				m.check("StreamClosed", acts)
			case 9:
				m.check("Drain", p.Drain(now, time.Duration(arg%64)*time.Second))
			}
		}
	})
}
