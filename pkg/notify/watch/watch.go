// Package watch is pull mode: the sidecar serves
// hangup.notify.v1.DisconnectWatch.Watch on a local address, and apps that
// cannot easily serve Notify read their events from it as clients.
//
// A Hub sits between the relay and the push Notifier: every event is
// stamped (id, time, incarnation) once, numbered, kept in a bounded replay
// buffer for the watchers, and handed on unchanged to the next Sink, so
// that push and pull carry the same event id.
//
// Guarantees, per watcher: events arrive in sequence order; a watcher that
// resumes with the incarnation and sequence of the last event it handled
// gets every later event the buffer still holds; events it asked for that
// the buffer no longer holds are counted in the next event's missed_before,
// never skipped silently. Publish never blocks: a watcher that is away or
// reads slowly only falls behind in the buffer, it holds no queue of its
// own.
package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/ports"
)

// SuggestedAddr is the address to give --watch-addr when nothing else is
// agreed: loopback, on the port pkg/ports keeps clear of the meshes' ports.
// Pull mode is off unless an address is given.
var SuggestedAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.Watch))

// DefaultBuffer is how many events the replay buffer holds: as many as the
// push queue (notify.DefaultQueueSize), so that a watcher away as long as a
// Notify receiver may be loses nothing either. A few MB when full.
const DefaultBuffer = notify.DefaultQueueSize

// MaxBuffer bounds Config.Buffer: a full buffer holds each event's strings
// (a few hundred bytes), so a million is some hundreds of MB, more than a
// sidecar should hold for watchers that are away.
const MaxBuffer = 1_000_000

// maxSendBatch bounds how many events a watcher takes from the buffer under
// one lock; it then sends them without the lock.
const maxSendBatch = 64

// Config configures a Hub.
type Config struct {
	// Addr is where Watch is served: "host:port" or "unix:///absolute/path".
	// Empty disables pull mode. Flag: --watch-addr. Default empty;
	// SuggestedAddr when one is wanted.
	Addr string
	// Buffer is how many of the latest events are kept for watchers to
	// resume from. Default DefaultBuffer, minimum 1, maximum MaxBuffer.
	// Flag: --watch-buffer.
	Buffer int
	// Logger receives watchers' arrivals, departures and gaps. Default:
	// discard.
	Logger *slog.Logger
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if err := notify.CheckAddr(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("watch-addr %w", err))
		}
	}
	if c.Buffer < 0 {
		errs = append(errs, fmt.Errorf("watch-buffer %d: must be at least 1", c.Buffer))
	}
	if c.Buffer > MaxBuffer {
		errs = append(errs, fmt.Errorf("watch-buffer %d: must be at most %d; a watcher away longer than the buffer covers is told what it missed", c.Buffer, MaxBuffer))
	}
	return errors.Join(errs...)
}

// entry is one buffered event with its sequence.
type entry struct {
	seq uint64
	ev  event.Event
}

// Hub numbers events, keeps the latest in a ring and serves them to
// watchers. It implements event.Sink (for the relay) and
// DisconnectWatchServer.
type Hub struct {
	notifyv1.UnimplementedDisconnectWatchServer

	// Immutable after New.
	cfg         Config
	log         *slog.Logger
	next        event.Sink
	incarnation string

	// Guarded by mu.
	mu      sync.Mutex
	ring    []entry // sequence s at ring[(s-1) % len]; grows to cfg.Buffer
	first   uint64  // oldest sequence held; 0 while empty
	last    uint64  // newest sequence given out; 0 while none
	changed chan struct{}
	waiting bool // a watcher holds changed: close it on the next Publish

	// Guarded by srvMu: the server Serve runs, and whether Close came.
	srvMu  sync.Mutex
	srv    *grpc.Server
	closed bool

	// Atomic counters for Counters.
	watchers           atomic.Int64
	sent, gaps, missed atomic.Uint64
}

// Counters is a snapshot of a Hub's watchers, for metrics.
type Counters struct {
	Watchers int64  // Watch streams open now
	Sent     uint64 // events sent to watchers, counted once per watcher and send
	Gaps     uint64 // responses that reported events the watcher will never get (missed_before > 0)
	Missed   uint64 // the events those responses reported, summed
}

// Counters returns the watcher counters.
func (h *Hub) Counters() Counters {
	return Counters{Watchers: h.watchers.Load(), Sent: h.sent.Load(), Gaps: h.gaps.Load(), Missed: h.missed.Load()}
}

var (
	_ event.Sink                     = (*Hub)(nil)
	_ notifyv1.DisconnectWatchServer = (*Hub)(nil)
)

// New validates cfg and returns a Hub that hands every event on to next
// (nil: to nobody) after buffering it. The first event buffered is the
// ScopeSidecar event naming this process's incarnation live, so that a
// watcher learns it as a Notify receiver does. Serve it with Serve.
func New(cfg Config, next event.Sink) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if next == nil {
		next = event.SinkFunc(func(event.Event) {})
	}
	h := &Hub{cfg: cfg, log: cfg.Logger.With("watch_addr", cfg.Addr), next: next,
		incarnation: event.Incarnation(), changed: make(chan struct{})}
	h.buffer(event.Event{
		Scope:     event.ScopeSidecar,
		Reason:    event.ReasonSidecarRestart,
		Initiator: event.InitiatorSidecar,
	})
	return h, nil
}

// Publish stamps ev (a new id when it has none, the time when it has none,
// this process's incarnation when it has none), buffers it for the
// watchers and hands it on to the next Sink. It never blocks.
func (h *Hub) Publish(ev event.Event) {
	ev = h.buffer(ev)
	h.next.Publish(ev)
}

// buffer stamps ev, gives it the next sequence and keeps it, dropping the
// oldest when the ring is full.
func (h *Hub) buffer(ev event.Event) event.Event {
	if ev.ID == "" {
		ev.ID = event.NewEventID()
	}
	if ev.DetectedAt.IsZero() {
		ev.DetectedAt = time.Now()
	}
	if ev.Incarnation == "" {
		ev.Incarnation = h.incarnation
	}
	h.mu.Lock()
	h.last++
	e := entry{seq: h.last, ev: ev}
	if len(h.ring) < h.cfg.Buffer {
		h.ring = append(h.ring, e)
	} else {
		h.ring[(h.last-1)%uint64(len(h.ring))] = e
	}
	if h.first == 0 {
		h.first = 1
	}
	if h.last-h.first+1 > uint64(len(h.ring)) {
		h.first = h.last - uint64(len(h.ring)) + 1
	}
	if h.waiting {
		close(h.changed)
		h.changed = make(chan struct{})
		h.waiting = false
	}
	h.mu.Unlock()
	return ev
}

// entryLocked returns the event of sequence seq, which must be held.
func (h *Hub) entryLocked(seq uint64) entry {
	// Sequence s sits at (s-1) mod len: while the ring grows, len is
	// h.last and that is s-1 itself.
	return h.ring[(seq-1)%uint64(len(h.ring))]
}

// take returns up to maxSendBatch events from sequence from on, how many
// events from `from` on are no longer held, and a channel closed when more
// arrive (only when it returns no events).
func (h *Hub) take(from uint64) (batch []entry, missed uint64, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.first > from {
		missed = h.first - from
		from = h.first
	}
	for seq := from; seq <= h.last && len(batch) < maxSendBatch; seq++ {
		batch = append(batch, h.entryLocked(seq))
	}
	if len(batch) == 0 {
		h.waiting = true
		changed = h.changed
	}
	return batch, missed, changed
}

// Watch implements DisconnectWatch.Watch: it streams the events after the
// request's position until the watcher leaves or the Hub closes.
func (h *Hub) Watch(req *notifyv1.WatchRequest, stream grpc.ServerStreamingServer[notifyv1.WatchResponse]) error {
	next := uint64(1)
	if req.GetIncarnation() == h.incarnation {
		h.mu.Lock()
		last := h.last
		h.mu.Unlock()
		if req.GetAfterSequence() > last {
			return status.Errorf(codes.InvalidArgument,
				"after_sequence %d is beyond the last event (%d) of incarnation %s: resume with the sequence of an event this sidecar sent, or 0 to start at the first",
				req.GetAfterSequence(), last, h.incarnation)
		}
		next = req.GetAfterSequence() + 1
	}
	ctx := stream.Context()
	h.watchers.Add(1)
	defer h.watchers.Add(-1)
	h.log.Info("watch: a watcher connected", "incarnation", req.GetIncarnation(), "after_sequence", req.GetAfterSequence(), "from", next)
	defer h.log.Info("watch: a watcher left", "next_sequence", next)
	for {
		batch, missed, changed := h.take(next)
		if missed > 0 {
			h.log.Warn("watch: a watcher asked for events no longer buffered; telling it in missed_before",
				"missed", missed, "from_sequence", next, "buffer", h.cfg.Buffer)
		}
		if len(batch) == 0 {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		for i, e := range batch {
			resp := &notifyv1.WatchResponse{Event: notify.ToProto(e.ev), Sequence: e.seq}
			if i == 0 {
				resp.MissedBefore = missed
			}
			if err := stream.Send(resp); err != nil {
				return fmt.Errorf("watch: send event %d: %w", e.seq, err)
			}
			h.sent.Add(1)
			if resp.MissedBefore > 0 {
				h.gaps.Add(1)
				h.missed.Add(resp.MissedBefore)
			}
			next = e.seq + 1
		}
	}
}

// Listen opens cfg.Addr: a TCP address or a unix socket path.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen on --watch-addr %s: %w", addr, err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --watch-addr %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves Watch on ln until Close. It returns nil after Close.
func (h *Hub) Serve(ln net.Listener) error {
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectWatchServer(gs, h)
	h.srvMu.Lock()
	if h.closed || h.srv != nil {
		h.srvMu.Unlock()
		_ = ln.Close()
		if h.closed {
			return nil
		}
		return errors.New("watch: Serve called twice")
	}
	h.srv = gs
	h.srvMu.Unlock()
	if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("watch: serve on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Close ends every Watch stream and stops serving. Watchers resume from
// the next sidecar process, which tells them it is a new incarnation.
func (h *Hub) Close() {
	h.srvMu.Lock()
	gs := h.srv
	h.closed = true
	h.srvMu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// Incarnation returns the incarnation the Hub numbers events in.
func (h *Hub) Incarnation() string { return h.incarnation }

// Stats returns the sequence of the oldest and the newest event held.
func (h *Hub) Stats() (first, last uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first, h.last
}
