package keepalive

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

// GOAWAY debug data the policy asks for, as grpc-go sends them.
const (
	DebugTooManyPings     = "too_many_pings"
	DebugMaxIdle          = "max_idle"
	DebugMaxAge           = "max_age"
	DebugShutdown         = "shutdown"
	DebugKeepaliveTimeout = "keepalive_timeout"
)

// pingTag starts the opaque data of every PING the policy sends; the other
// four bytes are a per-connection counter.
var pingTag = [4]byte{'h', 'g', 'u', 'p'}

// Kind says what the relay must do.
type Kind uint8

// Kinds of Action. After GoAwayTooManyPings, CloseDead or Close the policy is
// finished: it returns no more actions and Deadline is zero.
const (
	// None: nothing to do. Never returned inside a slice; the zero Action.
	None Kind = iota
	// SendPing: write PING (not ACK) with Action.Ping to the client.
	SendPing
	// GoAwayGraceful: phase 1 of a drain. Write GOAWAY(last-stream-id
	// 2^31-1, NO_ERROR, Action.Debug) and then PING with Action.Ping
	// (RFC 9113 §6.8: the client stops opening streams, and those already
	// in flight, or opened meanwhile, are still accepted).
	GoAwayGraceful
	// GoAwayFinal: phase 2 of a drain. Write GOAWAY(last-stream-id = the
	// highest stream id the relay has accepted, NO_ERROR, Action.Debug) and
	// refuse newer streams. The policy says Close when no stream remains.
	GoAwayFinal
	// GoAwayTooManyPings: write GOAWAY(last-stream-id = highest accepted,
	// ENHANCE_YOUR_CALM, "too_many_pings") and close the connection; open
	// streams end with Reason (PING_ABUSE).
	GoAwayTooManyPings
	// CloseDead: the client did not answer a PING within Timeout. Close the
	// connection; open streams end with Reason (KEEPALIVE_TIMEOUT).
	CloseDead
	// Close: the drain is over, either because no stream remains or because
	// its grace or drain timeout passed. Close the connection; streams still
	// open end with Reason (MAX_AGE or SHUTDOWN).
	Close
	// SendRTTPing: write PING (not ACK) with Action.Ping to the client, only
	// to measure the round-trip time (after the preface, and every
	// RTTInterval). Unlike SendPing it does not start the keepalive
	// timeout: a client is judged dead by the keepalive rules alone.
	SendRTTPing
)

var kindNames = [...]string{"None", "SendPing", "GoAwayGraceful", "GoAwayFinal", "GoAwayTooManyPings", "CloseDead", "Close", "SendRTTPing"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Action is one thing the relay must do, see Kind.
type Action struct {
	Kind Kind
	// Ping is the opaque data of the PING to write (SendPing, GoAwayGraceful).
	Ping [8]byte
	// Debug is the GOAWAY debug data (GoAway*), or for CloseDead and Close
	// the same word for logs.
	Debug string
	// Reason is why the connection is being ended, for the disconnect events
	// of the streams the action cuts off.
	Reason event.Reason
}

type state uint8

const (
	stateOpen     state = iota
	stateHeadsUp        // phase 1 GOAWAY and its PING sent, waiting for the ACK
	stateDraining       // final GOAWAY sent, waiting for the streams
	stateFinished       // a terminal action was returned
)

// Policy is the keepalive state of one client connection. It is not safe for
// concurrent use: the relay calls it under the connection's lock.
type Policy struct {
	// Immutable after New.
	cfg   Config
	start time.Time // the time New was given: every instant below counts from it
	ageAt instant   // MaxConnectionAge with jitter; noInstant when off

	// now is the latest time passed in. Times that go backwards (the relay
	// read the clock before waiting for its lock) are raised to it, so the
	// policy only ever sees time move forward.
	now instant

	// Liveness.
	lastRead   instant // last frame read from the client
	pingOut    bool    // one of our PINGs is sent and no frame read since
	pingSentAt instant // when the oldest such PING was sent
	pingSeq    uint32  // counter of our PINGs; the last one sent

	// Round-trip time (rtt.go). The latest of our PINGs is the one timed.
	// No PING is sent only to measure while one of ours is unanswered, so
	// measuring never gives a client two of ours to answer; keepalive and
	// drain PINGs go as they always did (a client silent for Time, or a
	// GOAWAY that needs its PING).
	ackedSeq uint32  // the highest of our PINGs acknowledged
	timedSeq uint32  // the PING being timed; 0 when none
	timedAt  instant // when it was sent
	pingAt   instant // when our latest PING was sent; the policy's start before the first
	rtt      RTTEstimator

	// Enforcement of client PINGs.
	lastPingAt   instant // last client PING; noInstant before the first
	strikes      int
	resetStrikes bool // HEADERS or DATA written since the last client PING

	// Streams and idleness.
	streams   int
	idleSince instant // when streams last became 0; noInstant while busy

	// Draining.
	state       state
	ageFired    bool
	drainReason event.Reason
	drainDebug  string
	drainPing   [8]byte
	headsUpAt   instant      // when phase 1 was sent
	closeAt     instant      // grace or drain timeout; noInstant for none
	closeReason event.Reason // reason of streams cut off at closeAt
	closeDebug  string
}

// instant is a time on the policy's clock, in nanoseconds since its start:
// a Policy lives as long as its connection and keeps ten times, which as
// time.Time values (24 bytes each) made up half its size. Instants only
// grow (see advance), so they are never negative but noInstant.
type instant int64

// noInstant is no time: a deadline that is off, an event yet to happen.
const noInstant instant = math.MinInt64

// instantOf returns t on the policy's clock; Sub saturates, and so a time
// before the start is raised to it by advance.
func (p *Policy) instantOf(t time.Time) instant { return instant(t.Sub(p.start)) }

// timeOf returns i as a time, the zero time for noInstant.
func (p *Policy) timeOf(i instant) time.Time {
	if i == noInstant {
		return time.Time{}
	}
	return p.start.Add(time.Duration(i))
}

// add returns i + d for d >= 0, saturating instead of wrapping around.
func (i instant) add(d time.Duration) instant {
	if d > 0 && i > math.MaxInt64-instant(d) {
		return math.MaxInt64
	}
	return i + instant(d)
}

// New returns the policy of a connection accepted at now. cfg should have
// passed Validate; values out of range are raised to the nearest accepted
// one. rnd returns a number in [0, 1) and draws the jitter of
// MaxConnectionAge; nil uses math/rand/v2.Float64.
func New(cfg Config, now time.Time, rnd func() float64) *Policy {
	cfg = cfg.normalized()
	// now, lastRead, idleSince and pingAt are the start: instant 0.
	p := &Policy{cfg: cfg, start: now, ageAt: noInstant, lastPingAt: noInstant, closeAt: noInstant}
	if cfg.MaxConnectionAge > 0 {
		if rnd == nil {
			rnd = rand.Float64
		}
		p.ageAt = instant(0).add(jittered(cfg.MaxConnectionAge, rnd()))
	}
	return p
}

// jittered spreads d by ±maxAgeJitter: r = 0 gives -10%, r → 1 gives +10%.
// r outside [0, 1] is clamped and NaN counts as 0.5, so a bad source of
// randomness can narrow the spread but never widen it.
func jittered(d time.Duration, r float64) time.Duration {
	if math.IsNaN(r) {
		r = 0.5
	}
	r = min(max(r, 0), 1)
	return d + time.Duration((2*r-1)*maxAgeJitter*float64(d))
}

// advance records now and returns the time to act on: never earlier than any
// time seen before.
func (p *Policy) advance(now time.Time) instant {
	p.now = max(p.now, p.instantOf(now))
	return p.now
}

// FrameRead records that a frame of any type was read from the client: it
// postpones the next keepalive PING and proves the client alive, like any
// ACK would.
func (p *Policy) FrameRead(now time.Time) {
	p.lastRead = p.advance(now)
	p.pingOut = false
}

// HeadersOrDataWritten records that HEADERS or DATA went to the client. As in
// grpc-go, the next client PING then resets the strikes to zero and is not
// judged itself: a client that gets responses may keep its keepalive going.
func (p *Policy) HeadersOrDataWritten(now time.Time) {
	p.advance(now)
	p.resetStrikes = true
}

// PingReceived judges a PING (not ACK) from the client; it also counts as a
// frame read, so calling FrameRead for it as well is harmless. It returns
// GoAwayTooManyPings once the client has more than MaxPingStrikes strikes.
func (p *Policy) PingReceived(now time.Time) []Action {
	p.FrameRead(now)
	at := p.now
	if p.state == stateFinished {
		return nil
	}
	last := p.lastPingAt
	p.lastPingAt = at
	if p.resetStrikes {
		p.resetStrikes = false
		p.strikes = 0
		return nil
	}
	minGap := p.cfg.MinTime
	if p.streams == 0 && !p.cfg.PermitWithoutStream {
		minGap = noStreamPingInterval
	}
	if last != noInstant && time.Duration(at-last) < minGap {
		p.strikes++
	}
	if p.strikes <= MaxPingStrikes {
		return nil
	}
	p.state = stateFinished
	return []Action{{Kind: GoAwayTooManyPings, Debug: DebugTooManyPings, Reason: event.ReasonPingAbuse}}
}

// IsOwnPing reports whether data is the opaque data of a PING this policy
// asked to send. The relay passes ACKs carrying it to PingAckReceived and
// forwards every other ACK to the app.
func (p *Policy) IsOwnPing(data [8]byte) bool {
	if [4]byte(data[:4]) != pingTag {
		return false
	}
	seq := binary.BigEndian.Uint32(data[4:])
	return seq >= 1 && seq <= p.pingSeq
}

// PingAckReceived handles the ACK of one of our PINGs (see IsOwnPing); it
// also counts as a frame read, and when it answers the PING being timed it
// is a round-trip sample (see RTT). The ACK of the phase-1 PING of a drain
// returns GoAwayFinal, followed by Close when no stream is open.
func (p *Policy) PingAckReceived(now time.Time, data [8]byte) []Action {
	p.FrameRead(now)
	// A peer answers PINGs in the order it got them (RFC 9113 §6.7 and one
	// TCP stream), so an ACK also settles every earlier PING of ours; one
	// it skipped is never waited for again.
	seq := binary.BigEndian.Uint32(data[4:])
	if seq > p.pingSeq {
		seq = 0 // not one of ours after all (IsOwnPing was not asked)
	}
	p.ackedSeq = max(p.ackedSeq, seq)
	if seq != 0 && seq == p.timedSeq {
		p.rtt.Observe(time.Duration(p.now - p.timedAt))
		p.timedSeq = 0
	}
	if p.state != stateHeadsUp || data != p.drainPing {
		return nil
	}
	return p.final(nil)
}

// PrefaceSent records that the server's connection preface (the app's
// first SETTINGS) has gone to the client, so that PINGs may follow
// (RFC 9113 §3.4), and returns SendRTTPing when the policy has sent no PING
// yet: even a connection that lives less than Time gets its round-trip time
// measured (grpc-go's BDP estimator pings at the start of a connection
// too). Later calls return nothing. The relay writes that PING right
// behind the preface rather than as a queued action.
func (p *Policy) PrefaceSent(now time.Time) []Action {
	at := p.advance(now)
	if p.state == stateFinished || p.pingSeq > 0 {
		return nil
	}
	return []Action{{Kind: SendRTTPing, Ping: p.nextPing(at, false)}}
}

// RTT returns the connection's round-trip time, measured from the PINGs
// the policy asked for to their ACKs; not Known before the first ACK.
func (p *Policy) RTT() event.RTT { return p.rtt.RTT() }

// StreamOpened records a new stream from the client.
func (p *Policy) StreamOpened(now time.Time) {
	p.advance(now)
	p.streams++
	p.idleSince = noInstant
}

// StreamClosed records that a stream ended, whatever the way. When it was the
// last one and the final GOAWAY is out, it returns Close. Unbalanced calls
// are ignored: the count never goes below zero.
func (p *Policy) StreamClosed(now time.Time) []Action {
	at := p.advance(now)
	if p.streams == 0 {
		return nil
	}
	p.streams--
	if p.streams > 0 {
		return nil
	}
	p.idleSince = at
	if p.state != stateDraining {
		return nil
	}
	return p.finish(nil, Close, p.drainReason, p.drainDebug)
}

// Drain starts the graceful shutdown of the connection (SIGTERM): the same
// two-phase GOAWAY as max-age, with debug "shutdown"; streams still open
// timeout later are cut off with reason SHUTDOWN. timeout <= 0 waits for the
// streams without limit. When a drain is already under way no new GOAWAY is
// sent, but the earlier of the two deadlines applies.
func (p *Policy) Drain(now time.Time, timeout time.Duration) []Action {
	at := p.advance(now)
	closeBy := noInstant
	if timeout > 0 {
		closeBy = at.add(timeout)
	}
	return p.startDrain(nil, at, event.ReasonShutdown, DebugShutdown, closeBy)
}

// Tick does whatever is due at now. The relay calls it when its timer set to
// Deadline fires; an early call does nothing, a late one catches up on
// everything that came due meanwhile, in this order: keepalive timeout, the
// grace or drain deadline, the phase-1 ACK timeout, max-age, max-idle, the
// keepalive PING.
func (p *Policy) Tick(now time.Time) []Action {
	at := p.advance(now)
	if p.state == stateFinished {
		return nil
	}
	if p.pingOut && at >= p.pingSentAt.add(p.cfg.Timeout) {
		return p.finish(nil, CloseDead, event.ReasonKeepaliveTimeout, DebugKeepaliveTimeout)
	}
	var acts []Action
	if p.state != stateOpen && p.closeAt != noInstant && at >= p.closeAt {
		if p.state == stateHeadsUp {
			acts = p.final(acts)
			if p.state == stateFinished {
				return acts
			}
		}
		return p.finish(acts, Close, p.closeReason, p.closeDebug)
	}
	if p.state == stateHeadsUp && at >= p.headsUpAt.add(p.cfg.Timeout) {
		acts = p.final(acts)
		if p.state == stateFinished {
			return acts
		}
	}
	if p.ageAt != noInstant && !p.ageFired && at >= p.ageAt {
		p.ageFired = true
		closeBy := noInstant
		if p.cfg.MaxConnectionAgeGrace > 0 {
			closeBy = at.add(p.cfg.MaxConnectionAgeGrace)
		}
		acts = p.startDrain(acts, at, event.ReasonMaxAge, DebugMaxAge, closeBy)
	}
	if idle := p.idleDeadline(); p.state == stateOpen && idle != noInstant && at >= idle {
		acts = p.startDrain(acts, at, event.ReasonIdleTimeout, DebugMaxIdle, noInstant)
	}
	switch {
	case !p.pingOut && at >= p.lastRead.add(p.cfg.Time):
		acts = append(acts, Action{Kind: SendPing, Ping: p.nextPing(at, true)})
	case p.rttDue(at):
		acts = append(acts, Action{Kind: SendRTTPing, Ping: p.nextPing(at, false)})
	}
	return acts
}

// Deadline is when Tick must run next; zero when nothing is pending. After
// Tick(now) it is always later than now. After other calls it can lie in the
// past when the relay has not yet ticked for something overdue: the relay's
// timer then fires at once.
func (p *Policy) Deadline() time.Time {
	if p.state == stateFinished {
		return time.Time{}
	}
	d := noInstant
	earliest := func(t instant) {
		if t != noInstant && (d == noInstant || t < d) {
			d = t
		}
	}
	if p.pingOut {
		earliest(p.pingSentAt.add(p.cfg.Timeout))
	} else {
		earliest(p.lastRead.add(p.cfg.Time))
	}
	if p.state == stateHeadsUp {
		earliest(p.headsUpAt.add(p.cfg.Timeout))
	}
	if p.state != stateOpen {
		earliest(p.closeAt)
	}
	if !p.ageFired {
		earliest(p.ageAt)
	}
	if p.state == stateOpen {
		earliest(p.idleDeadline())
	}
	earliest(p.rttDeadline())
	return p.timeOf(d)
}

// unanswered reports whether one of our PINGs awaits its ACK.
func (p *Policy) unanswered() bool { return p.pingSeq > p.ackedSeq }

// rttDeadline is when the next measurement PING is due; noInstant when
// RTTInterval is off or one of our PINGs is unanswered.
func (p *Policy) rttDeadline() instant {
	if p.cfg.RTTInterval == 0 || p.unanswered() {
		return noInstant
	}
	return p.pingAt.add(p.cfg.RTTInterval)
}

// rttDue reports whether a measurement PING is due at now.
func (p *Policy) rttDue(now instant) bool {
	d := p.rttDeadline()
	return d != noInstant && now >= d
}

// idleDeadline is when the connection counts as idle for too long;
// noInstant when max-idle is off or a stream is open.
func (p *Policy) idleDeadline() instant {
	if p.cfg.MaxConnectionIdle == 0 || p.streams > 0 {
		return noInstant
	}
	return p.idleSince.add(p.cfg.MaxConnectionIdle)
}

// nextPing picks the data of a new PING sent at now and times it (an
// earlier one still unanswered is no longer timed: its ACK, if it comes,
// is no sample). A keepalive PING also marks a PING outstanding unless one
// already is (the oldest unanswered PING times out).
func (p *Policy) nextPing(now instant, keepalive bool) [8]byte {
	p.pingSeq++
	var data [8]byte
	copy(data[:4], pingTag[:])
	binary.BigEndian.PutUint32(data[4:], p.pingSeq)
	if keepalive && !p.pingOut {
		p.pingOut = true
		p.pingSentAt = now
	}
	p.timedSeq, p.timedAt, p.pingAt = p.pingSeq, now, now
	return data
}

// startDrain begins phase 1 with the given reason, or, when a drain is
// already under way, only brings its close deadline forward to closeBy.
func (p *Policy) startDrain(acts []Action, now instant, reason event.Reason, debug string, closeBy instant) []Action {
	switch p.state {
	case stateFinished:
		return acts
	case stateOpen:
		p.state = stateHeadsUp
		p.headsUpAt = now
		p.drainReason, p.drainDebug = reason, debug
		p.closeAt, p.closeReason, p.closeDebug = closeBy, reason, debug
		p.drainPing = p.nextPing(now, true)
		return append(acts, Action{Kind: GoAwayGraceful, Ping: p.drainPing, Debug: debug, Reason: reason})
	}
	if closeBy != noInstant && (p.closeAt == noInstant || closeBy < p.closeAt) {
		p.closeAt, p.closeReason, p.closeDebug = closeBy, reason, debug
	}
	return acts
}

// final moves from phase 1 to phase 2 and closes at once when no stream is
// open.
func (p *Policy) final(acts []Action) []Action {
	p.state = stateDraining
	acts = append(acts, Action{Kind: GoAwayFinal, Debug: p.drainDebug, Reason: p.drainReason})
	if p.streams == 0 {
		return p.finish(acts, Close, p.drainReason, p.drainDebug)
	}
	return acts
}

// finish appends a terminal action and ends the policy.
func (p *Policy) finish(acts []Action, k Kind, reason event.Reason, debug string) []Action {
	p.state = stateFinished
	return append(acts, Action{Kind: k, Debug: debug, Reason: reason})
}
