package grace

import (
	"container/heap"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

// DefaultMaxHeld bounds the events held at once. Beyond it the one closest
// to its deadline is sent at once, unchanged: memory stays bounded and no
// event is lost, only its grace is cut short.
const DefaultMaxHeld = 10000

// Config is what a Grace needs. Rules and SessionHeader are required.
type Config struct {
	// Rules is each method's grace; a method without one is never held.
	Rules Rules
	// SessionHeader names the request header whose value is a stream's
	// session key (lower case, e.g. x-session-id). A stream without it is
	// never held and resumes nothing.
	SessionHeader string
	// MaxHeld bounds the events held at once. Default DefaultMaxHeld.
	MaxHeld int
	// Logger is the structured logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats is a snapshot of a Grace's counters, for metrics.
type Stats struct {
	Held    uint64 // stream events held
	Resumed uint64 // held events replaced by a RESUMED event
	Expired uint64 // held events sent unchanged: their grace expired, the bound was reached or the sidecar shut down
	Holding int    // stream events held now
}

// Holdable says whether reason is a loss of the client's network, the
// only losses a Grace holds.
func Holdable(reason event.Reason) bool {
	switch reason {
	case event.ReasonKeepaliveTimeout, event.ReasonConnectionClosed, event.ReasonConnectionReset:
		return true
	}
	return false
}

// Grace holds the events of lost streams on graced methods and forwards
// everything else to the next Sink at once, in the order published.
//
// Publish holds a stream-scope event when its reason is Holdable, its
// SessionKey is set and its method has a grace; the connection-scope event
// of a connection with held streams is held with them. StreamOpened
// resumes the oldest held stream of the session key, preferring one of
// the same method: its event is replaced by one ReasonResumed event that
// names the new stream, sent at once. A connection's held event is dropped
// when every one of its streams was held and resumed, and sent (after its
// streams' events) otherwise. What is still held when its grace expires is
// sent unchanged; Close sends everything held, unchanged, and from then on
// Publish forwards at once.
//
// Publish and StreamOpened never block: they take a mutex held only for
// bookkeeping and the next Sink's Publish, which must not block either.
type Grace struct {
	// Immutable after New.
	cfg       Config
	next      event.Sink
	afterFunc func(time.Duration, func()) (stop func() bool)

	// Guarded by mu.
	mu       sync.Mutex
	sessions map[string][]*held   // by session key, oldest first
	conns    map[string]*connHold // connections with held streams, by id
	byTime   deadlines            // every held stream event, by deadline
	recent   map[string]opened    // by session key: the latest stream opened that resumed nothing
	opens    []opened             // the same, oldest first, for pruning
	stop     func() bool          // the armed timer, nil when none
	armedFor time.Time            // its deadline
	armed    uint64               // its generation: a timer stopped too late to stop its fire is ignored
	closed   bool

	held, resumed, expired atomic.Uint64
}

var _ event.Sink = (*Grace)(nil)

// held is one held stream event.
type held struct {
	ev       event.Event
	deadline time.Time
	index    int // in byTime
}

// opened is a stream on a graced method that opened with a session key.
type opened struct {
	key, method, conn string
	stream            uint32
	at                time.Time
}

// connHold is a connection whose stream events are held.
type connHold struct {
	pending int          // its stream events held now
	sendEv  bool         // one of them expired, or one of its streams was not held: its event is sent
	ev      *event.Event // its connection-scope event, once published
}

// New returns a Grace that forwards to next. The caller must call Close.
func New(cfg Config, next event.Sink) *Grace {
	return newGrace(cfg, next, func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop })
}

func newGrace(cfg Config, next event.Sink, afterFunc func(time.Duration, func()) func() bool) *Grace {
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Grace{cfg: cfg, next: next, afterFunc: afterFunc,
		sessions: map[string][]*held{}, conns: map[string]*connHold{}, recent: map[string]opened{}}
}

// Graced says whether streams of method may be held and may resume a
// session. It does not allocate; the relay asks it for each new stream.
func (g *Grace) Graced(method string) bool { return g.cfg.Rules.For(method) > 0 }

// SessionHeader is Config.SessionHeader.
func (g *Grace) SessionHeader() string { return g.cfg.SessionHeader }

// Stats returns the counters.
func (g *Grace) Stats() Stats {
	g.mu.Lock()
	n := len(g.byTime)
	g.mu.Unlock()
	return Stats{Held: g.held.Load(), Resumed: g.resumed.Load(), Expired: g.expired.Load(), Holding: n}
}

// Publish holds ev or forwards it; see Grace.
func (g *Grace) Publish(ev event.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.next.Publish(ev)
		return
	}
	switch ev.Scope {
	case event.ScopeStream:
		if !Holdable(ev.Reason) {
			break
		}
		d := g.cfg.Rules.For(ev.Method)
		if d <= 0 || ev.SessionKey == "" {
			if ch := g.conns[ev.ConnectionID]; ch != nil {
				ch.sendEv = true
			}
			break
		}
		g.holdLocked(ev, d)
		return
	case event.ScopeConnection:
		if ch := g.conns[ev.ConnectionID]; ch != nil {
			if ch.pending > 0 {
				ch.ev = &ev
				return
			}
			// Every stream resolved before this event came.
			delete(g.conns, ev.ConnectionID)
			if !ch.sendEv {
				return
			}
		}
	}
	g.next.Publish(ev)
}

// holdLocked holds a stream event for d, or resumes it at once when its
// session reconnected before the loss was found.
func (g *Grace) holdLocked(ev event.Event, d time.Duration) {
	if len(g.byTime) >= g.cfg.MaxHeld {
		g.releaseLocked(heap.Pop(&g.byTime).(*held), "bound reached")
	}
	now := g.cfg.Now()
	h := &held{ev: ev, deadline: now.Add(d)}
	g.sessions[ev.SessionKey] = append(g.sessions[ev.SessionKey], h)
	ch := g.conns[ev.ConnectionID]
	if ch == nil {
		ch = &connHold{}
		g.conns[ev.ConnectionID] = ch
	}
	ch.pending++
	g.held.Add(1)
	// A client that lost its network unnoticed (its old connection dies
	// only at the keepalive timeout) may have reconnected already: a
	// stream of its session opened on another connection after the lost
	// one started, and at most d ago, resumes it now.
	if o, ok := g.recent[ev.SessionKey]; ok && o.conn != ev.ConnectionID && !o.at.Before(ev.StartedAt) && now.Sub(o.at) <= d {
		delete(g.recent, ev.SessionKey)
		g.resumeLocked(h, o)
		return
	}
	heap.Push(&g.byTime, h)
	g.cfg.Logger.Debug("reconnect grace: holding event", "event", ev.ID, "reason", ev.Reason.String(),
		"conn", ev.ConnectionID, "stream", ev.StreamID, "method", ev.Method, "grace", d)
	g.armLocked()
}

// StreamOpened tells the Grace that a stream on a graced method opened
// with this session key: it resumes a held stream of the same key, if any,
// or is remembered for a loss of the same session found later (an old
// connection that dies only at its keepalive timeout). The relay calls it
// only for graced methods and a non-empty key.
func (g *Grace) StreamOpened(method, sessionKey, connID string, streamID uint32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	o := opened{key: sessionKey, method: method, conn: connID, stream: streamID, at: g.cfg.Now()}
	list := g.sessions[sessionKey]
	if len(list) == 0 {
		g.rememberLocked(o)
		return
	}
	pick := 0
	for i, h := range list {
		if h.ev.Method == method {
			pick = i
			break
		}
	}
	h := list[pick]
	heap.Remove(&g.byTime, h.index)
	g.resumeLocked(h, o)
}

// rememberLocked keeps o as its session's latest stream, for the longest
// grace a loss found after it could have.
func (g *Grace) rememberLocked(o opened) {
	g.recent[o.key] = o
	g.opens = append(g.opens, o)
	for len(g.opens) > 0 && (len(g.opens) > g.cfg.MaxHeld || o.at.Sub(g.opens[0].at) > MaxGrace) {
		if old := g.opens[0]; g.recent[old.key] == old {
			delete(g.recent, old.key)
		}
		g.opens = g.opens[1:]
	}
}

// resumeLocked replaces h's event, not (or no longer) in byTime, by a RESUMED
// event naming the stream o.
func (g *Grace) resumeLocked(h *held, o opened) {
	g.forgetLocked(h)
	ev := h.ev
	ev.ID = event.NewEventID()
	ev.Reason = event.ReasonResumed
	ev.HTTP2ErrorCode = 0
	ev.GoAwayDebug = ""
	ev.ResumedConnectionID, ev.ResumedStreamID, ev.ResumedAt = o.conn, o.stream, o.at
	g.resumed.Add(1)
	g.cfg.Logger.Info("reconnect grace: resumed", "event", ev.ID, "held_event", h.ev.ID, "conn", ev.ConnectionID,
		"stream", ev.StreamID, "resumed_conn", o.conn, "resumed_stream", o.stream, "method", ev.Method)
	g.next.Publish(ev)
	g.resolveLocked(h.ev.ConnectionID, false)
	g.armLocked()
}

// forgetLocked takes h out of its session's list.
func (g *Grace) forgetLocked(h *held) {
	key := h.ev.SessionKey
	list := g.sessions[key]
	for i, o := range list {
		if o == h {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(g.sessions, key)
	} else {
		g.sessions[key] = list
	}
}

// releaseLocked sends h's event unchanged; h is already out of byTime.
func (g *Grace) releaseLocked(h *held, why string) {
	g.forgetLocked(h)
	g.expired.Add(1)
	g.cfg.Logger.Debug("reconnect grace: sending held event", "event", h.ev.ID, "why", why,
		"conn", h.ev.ConnectionID, "stream", h.ev.StreamID)
	g.next.Publish(h.ev)
	g.resolveLocked(h.ev.ConnectionID, true)
}

// resolveLocked counts one held stream of connection id resolved, sent
// (expired) or not; once none is held, the connection's event is sent or,
// when everything resumed, dropped.
func (g *Grace) resolveLocked(id string, expired bool) {
	ch := g.conns[id]
	if ch == nil {
		return
	}
	ch.pending--
	ch.sendEv = ch.sendEv || expired
	if ch.pending > 0 || ch.ev == nil {
		// Keep the entry until the connection's event comes, so that it
		// is dropped or sent as its streams were.
		return
	}
	delete(g.conns, id)
	if ch.sendEv {
		g.next.Publish(*ch.ev)
	}
}

// expireLocked sends every event whose grace ended at or before now.
func (g *Grace) expireLocked(now time.Time) {
	for len(g.byTime) > 0 && !g.byTime[0].deadline.After(now) {
		g.releaseLocked(heap.Pop(&g.byTime).(*held), "grace expired")
	}
}

// armLocked points the timer at the earliest deadline.
func (g *Grace) armLocked() {
	if len(g.byTime) == 0 {
		if g.stop != nil {
			g.stop()
			g.stop = nil
		}
		return
	}
	next := g.byTime[0].deadline
	if g.stop != nil && g.armedFor.Equal(next) {
		return
	}
	if g.stop != nil {
		g.stop()
	}
	g.armed++
	gen := g.armed
	g.armedFor = next
	g.stop = g.afterFunc(next.Sub(g.cfg.Now()), func() { g.fire(gen) })
}

// fire is the timer of generation gen: it sends what expired and re-arms.
func (g *Grace) fire(gen uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || gen != g.armed {
		return // stopped after it had started
	}
	g.stop = nil
	g.expireLocked(g.cfg.Now())
	g.armLocked()
}

// Close sends every held event, unchanged and oldest deadline first, stops
// the timer and makes Publish forward at once. Call it before the next
// Sink stops, so that nothing held is lost.
func (g *Grace) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	for len(g.byTime) > 0 {
		g.releaseLocked(heap.Pop(&g.byTime).(*held), "shutdown")
	}
	// Connections whose own event has not come yet: it is forwarded as
	// it comes, like everything after Close.
	clear(g.conns)
	if g.stop != nil {
		g.stop()
		g.stop = nil
	}
	g.closed = true
}

// deadlines is a min-heap of held events by deadline.
type deadlines []*held

func (d deadlines) Len() int { return len(d) }
func (d deadlines) Less(i, j int) bool {
	return d[i].deadline.Before(d[j].deadline)
}
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].index, d[j].index = i, j
}
func (d *deadlines) Push(x any) {
	h := x.(*held)
	h.index = len(*d)
	*d = append(*d, h)
}
func (d *deadlines) Pop() any {
	old := *d
	h := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	return h
}
