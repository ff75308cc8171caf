package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
)

// maxLoggedIDs bounds how many dropped event ids one log record lists; the
// rest are only counted, so that an overflow storm cannot grow memory.
const maxLoggedIDs = 1000

// MaxCallBytes caps the encoded size of one NotifyRequest, as BatchMax caps
// its events (a batch always holds at least one event). Events carry the
// stream's allow-listed request headers, so 100 of them can outgrow the
// largest message the app accepts: 4 MiB by default in grpc-go, grpc-java,
// grpc-js and grpc core (C++, Python, Ruby), and tonic. A refused batch
// never leaves the queue, so it would block every event behind it. 1 MiB
// stays well under those defaults and costs nothing when events are small
// (100 events without headers are about 20 KB); an app with a smaller limit
// is handled when it refuses a call (see Notifier.refused).
const MaxCallBytes = 1 << 20

// HeadersDroppedKey is the Headers entry, set to "true", of an event the app
// refused as too large and that was sent again without its request headers.
// A pseudo-header name: no real request header can have it.
const HeadersDroppedKey = ":hangup-headers-dropped"

// Stats is a snapshot of a Notifier's counters, for metrics.
type Stats struct {
	Queued     uint64 // events accepted by Publish
	Delivered  uint64 // events the app acknowledged
	Dropped    uint64 // events given up: queue overflow, drain timeout, Publish after Close, too large for the app
	Retries    uint64 // Notify calls that repeated a failed call
	Failures   uint64 // Notify calls that did not end with OK
	QueueDepth int    // events waiting now, the batch in flight included

	// HeadersDropped counts events sent without their request headers (and
	// with Headers[HeadersDroppedKey] = "true") because the app refused
	// them, alone, as too large.
	HeadersDropped uint64
}

// Notifier delivers events to the app's DisconnectNotify service.
//
// Publish appends to a bounded queue and returns at once. One sender
// goroutine takes batches from the front of the queue and calls Notify; a
// batch leaves the queue only when the call returns OK, so events reach the
// app at least once and in Publish order (in order per connection in
// particular). A failed call is repeated, with the same event ids, after a
// capped exponential backoff with jitter; UNIMPLEMENTED is retried after
// UnimplementedRetry. Every other status, DEADLINE_EXCEEDED and connection
// failures included, is retried with the backoff: the sidecar cannot tell a
// bug in the app from a restart, and only the app can acknowledge an event.
//
// A call carries at most BatchMax events and MaxCallBytes (1 MiB) of them
// encoded, so that a burst of events with large headers stays within the
// app's largest accepted message. When the app still refuses a call as too
// large (RESOURCE_EXHAUSTED or OUT_OF_RANGE saying so: its limit is
// smaller), later calls carry at most half as many bytes and the front of
// the queue is sent again at once; a single event refused alone is sent
// once more without its request headers, marked with HeadersDroppedKey and
// counted in Stats.HeadersDropped, and dropped if the app refuses even that.
//
// Events are lost only when the queue is full (the oldest is dropped for each
// new one), when Close's ctx expires before the queue drains, when Publish
// is called after the sender stopped, and when the app refuses a single
// event without headers as too large; all four are counted in Stats.Dropped
// and logged with the event ids. (An event dropped by overflow while its
// batch was in flight may still reach the app; it stays counted as
// dropped.)
//
// After a sidecar restart: New queues a ScopeSidecar event naming this
// process's incarnation (event.Incarnation) before anything else, and queues
// another each time the channel to the app becomes ready again after it was
// lost, so that an app that missed one (it was down, or the event was
// dropped at the bound) still learns which process is live and frees what
// any other held. Every event published carries the incarnation.
//
// New starts three goroutines, the sender, a logger for overflow drops (so
// that Publish never writes logs) and a watcher of the channel's state;
// Close waits for all of them.
type Notifier struct {
	// Immutable after New.
	cfg         Config
	log         *slog.Logger
	disabled    bool
	conn        *grpc.ClientConn
	client      notifyv1.DisconnectNotifyClient
	wait        func(ctx context.Context, d time.Duration) bool // sleeps d; false when ctx ends first
	hold        holdFunc                                        // waits BatchDelay for a batch to fill
	incarnation string                                          // this process's, stamped on every event

	wake       chan struct{} // cap 1: Publish tells the sender there is work
	dropWake   chan struct{} // cap 1: Publish tells the drop logger there are ids to log
	closing    chan struct{} // closed by Close: drain, then stop
	hardCtx    context.Context
	hardStop   context.CancelFunc // ends the sender's calls and waits; Close calls it when its ctx ends
	senderDone chan struct{}      // closed when the sender returns
	logStop    chan struct{}      // closed by Close after the sender returned
	wg         sync.WaitGroup     // the sender and the drop logger
	closeOnce  sync.Once
	closeErr   error

	// Owned by the sender goroutine: one batch's buffers, reused by the
	// next so that a burst allocates nothing per event on the way out.
	batchBuf   []item
	wire       []*wireEvent
	req        notifyv1.NotifyRequest
	batchBytes int // the most bytes in one call: MaxCallBytes, less once the app refused a call as too large

	// appBack is set by the watcher when the channel to the app is ready
	// again after it was lost: the app may be a new process with a larger
	// receive limit, so the sender's next call may be MaxCallBytes again.
	appBack atomic.Bool

	// Guarded by mu.
	mu           sync.Mutex
	q            queue
	nextSeq      uint64
	draining     bool // Close was called: the sender stops when the queue is empty
	stopped      bool // the sender returned: Publish drops
	droppedIDs   []string
	droppedExtra int // dropped beyond maxLoggedIDs, not yet logged
	flushWaiters []flushWaiter

	// Atomic counters for Stats.
	queued, delivered, dropped, retries, failures, headersDropped atomic.Uint64
	depth                                                         atomic.Int64
}

var _ Sink = (*Notifier)(nil)

// holdFunc waits d, or less when closing is closed; it returns false when
// ctx ends first.
type holdFunc func(ctx context.Context, closing <-chan struct{}, d time.Duration) bool

// flushWaiter is a Flush waiting until every event up to seq is gone.
type flushWaiter struct {
	seq  uint64
	done chan struct{}
}

type item struct {
	ev       Event
	seq      uint64
	queuedAt time.Time
	attempts int // failed calls that carried it; in a batch, this call too

	// headersDropped: the app refused the event alone as too large, and
	// ev.Headers is now only the HeadersDroppedKey marker.
	headersDropped bool
}

// New validates cfg, fills in its defaults and starts the sender. The caller
// must call Close. With an empty cfg.Addr the Notifier is disabled: Publish
// discards events and no goroutine is started. New does not connect: the
// first Notify call does, so the app may start after the sidecar.
func New(cfg Config) (*Notifier, error) {
	n, err := newNotifier(cfg, sleepCtx, holdBatch)
	if err != nil {
		return nil, err
	}
	n.announce()
	return n, nil
}

// newNotifier is New with the two waits injected: wait sleeps before a
// retry, hold waits for a batch to fill (only with a positive BatchDelay).
func newNotifier(cfg Config, wait func(context.Context, time.Duration) bool, hold holdFunc) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify config: %w", err)
	}
	cfg = cfg.withDefaults()
	n := &Notifier{cfg: cfg, log: cfg.Logger.With("notify_addr", cfg.Addr), wait: wait, hold: hold,
		incarnation: event.Incarnation(), batchBytes: MaxCallBytes}
	if cfg.Addr == "" {
		n.disabled = true
		return n, nil
	}
	target := cfg.Addr
	if !strings.HasPrefix(target, "unix://") {
		// passthrough: a literal address, no DNS lookups on the way to loopback.
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// grpc's own reconnect backoff grows to 120s by default: an app that
		// restarted would get its events minutes late. Cap it like ours.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.RetryMin,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.RetryMax,
			},
			MinConnectTimeout: cfg.Timeout,
		}),
		// Wait for the connection (up to the call timeout) rather than fail
		// at once while it reconnects: events then arrive as soon as the app
		// listens again, not one retry delay later.
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
	)
	if err != nil {
		return nil, fmt.Errorf("notify client for %s: %w", cfg.Addr, err)
	}
	n.conn = conn
	n.client = notifyv1.NewDisconnectNotifyClient(conn)
	n.wake = make(chan struct{}, 1)
	n.dropWake = make(chan struct{}, 1)
	n.closing = make(chan struct{})
	n.senderDone = make(chan struct{})
	n.logStop = make(chan struct{})
	n.hardCtx, n.hardStop = context.WithCancel(context.Background())
	n.wg.Add(2)
	go n.send()
	go n.logDrops()
	return n, nil
}

// Publish queues ev for delivery and never blocks. An empty ev.ID is set with
// NewEventID, a zero ev.DetectedAt with the current time and an empty
// ev.Incarnation with this process's. When the queue is full the oldest
// queued event is dropped. ev.Headers is sent as given (the relay applies
// Config.HeaderAllowList) and must not be changed after Publish.
func (n *Notifier) Publish(ev Event) {
	if n.disabled {
		return
	}
	now := time.Now()
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if ev.DetectedAt.IsZero() {
		ev.DetectedAt = now
	}
	if ev.Incarnation == "" {
		ev.Incarnation = n.incarnation
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		n.dropped.Add(1)
		n.log.Warn("notify: dropped an event published after the notifier stopped", "event_id", ev.ID)
		return
	}
	overflow := false
	if n.lenLocked() >= n.cfg.QueueSize {
		old := n.popLocked()
		n.recordDropLocked(old.ev.ID)
		overflow = true
	}
	n.q.push(item{ev: ev, seq: n.nextSeq, queuedAt: now})
	n.nextSeq++
	n.depth.Store(int64(n.lenLocked()))
	n.mu.Unlock()

	n.queued.Add(1)
	if overflow {
		n.dropped.Add(1)
		signal(n.dropWake)
	}
	signal(n.wake)
}

// announce queues the event that names this incarnation live and starts the
// watcher that queues it again on every reconnection. New calls it; the
// unit tests that count events exactly do not.
func (n *Notifier) announce() {
	if n.disabled {
		return
	}
	n.log.Info("notify: naming this sidecar's incarnation live; the app frees the sessions of any other", "incarnation", n.incarnation)
	n.Publish(n.incarnationEvent())
	n.wg.Add(1)
	go n.watch()
}

// incarnationEvent is the ScopeSidecar event that tells the app this
// process is the live one.
func (n *Notifier) incarnationEvent() Event {
	return Event{
		Scope:       event.ScopeSidecar,
		Reason:      event.ReasonSidecarRestart,
		Initiator:   event.InitiatorSidecar,
		Incarnation: n.incarnation,
	}
}

// watch is the watcher goroutine: each time the channel to the app is READY
// again after it was lost (TRANSIENT_FAILURE, or IDLE and reconnected), it
// queues the incarnation event once more, and lets calls grow back to
// MaxCallBytes (appBack). The first READY needs none: the event New
// queued goes on that connection.
func (n *Notifier) watch() {
	defer n.wg.Done()
	wasReady, lost := false, false
	for st := n.conn.GetState(); ; st = n.conn.GetState() {
		switch st {
		case connectivity.Ready:
			if wasReady && lost && !isClosed(n.closing) {
				n.appBack.Store(true)
				n.log.Info("notify: reconnected to the app; naming the live incarnation again", "incarnation", n.incarnation)
				n.Publish(n.incarnationEvent())
			}
			wasReady, lost = true, false
		case connectivity.Shutdown:
			return
		default:
			// Idle, Connecting or TransientFailure: the connection is gone
			// (a retry may already be reconnecting, so Connecting counts).
			lost = wasReady
			if st == connectivity.Idle {
				// An idle channel waits for the next call, which may be far
				// off: reconnect now, so that the app hears the live
				// incarnation as soon as it is back.
				n.conn.Connect()
			}
		}
		if !n.conn.WaitForStateChange(n.hardCtx, st) {
			return
		}
	}
}

// Stats returns a snapshot of the counters. It takes no lock.
func (n *Notifier) Stats() Stats {
	return Stats{
		Queued:     n.queued.Load(),
		Delivered:  n.delivered.Load(),
		Dropped:    n.dropped.Load(),
		Retries:    n.retries.Load(),
		Failures:   n.failures.Load(),
		QueueDepth: int(n.depth.Load()),

		HeadersDropped: n.headersDropped.Load(),
	}
}

// Flush waits until every event published before it was delivered (or
// dropped), or until ctx ends.
func (n *Notifier) Flush(ctx context.Context) error {
	if n.disabled {
		return nil
	}
	n.mu.Lock()
	if n.lenLocked() == 0 {
		n.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	n.flushWaiters = append(n.flushWaiters, flushWaiter{seq: n.nextSeq - 1, done: ch})
	n.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify flush: %d events still queued: %w", n.depth.Load(), context.Cause(ctx))
	}
}

// Close delivers what is queued until ctx (the drain timeout) ends, then
// stops the sender, counts and logs what is left as dropped, and closes the
// connection. Events published while Close drains are still delivered; those
// published after the queue drained are dropped. It returns an error when
// events were left undelivered. Calling Close again returns the same result.
func (n *Notifier) Close(ctx context.Context) error {
	if n.disabled {
		return nil
	}
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.draining = true
		n.mu.Unlock()
		close(n.closing)
		select {
		case <-n.senderDone:
		case <-ctx.Done():
		}
		n.hardStop()
		<-n.senderDone

		n.mu.Lock()
		var left []string
		for n.lenLocked() > 0 {
			left = append(left, n.popLocked().ev.ID)
		}
		n.depth.Store(0)
		n.notifyFlushLocked()
		n.mu.Unlock()
		close(n.logStop)
		n.wg.Wait()

		var errs []error
		if len(left) > 0 {
			n.dropped.Add(uint64(len(left)))
			n.log.Error("notify: drain timeout: dropped undelivered events",
				"count", len(left), "event_ids", left, "cause", context.Cause(ctx))
			errs = append(errs, fmt.Errorf("notify close: %d events not delivered to %s before the drain timeout", len(left), n.cfg.Addr))
		}
		if err := n.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("notify close connection to %s: %w", n.cfg.Addr, err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// send is the sender goroutine: it owns the connection and is the only one
// that removes delivered events from the queue.
func (n *Notifier) send() {
	defer n.wg.Done()
	defer close(n.senderDone)
	defer func() {
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
	}()

	failed := 0 // consecutive failed calls
	loggedUnimplemented := false
	for {
		batch := n.nextBatch(failed > 0)
		if batch == nil {
			return
		}
		if n.appBack.Swap(false) && n.batchBytes < MaxCallBytes {
			n.log.Info("notify: the app is back; calls may be as large as before it refused one", "max_call_bytes", MaxCallBytes)
			n.batchBytes = MaxCallBytes
		}
		batch = n.build(batch)
		if failed > 0 {
			n.retries.Add(1)
		}
		size, err := n.call(batch)
		if err == nil {
			if failed > 0 {
				n.log.Info("notify: delivering again", "failed_calls", failed)
			}
			failed, loggedUnimplemented = 0, false
			n.ack(batch)
			continue
		}
		if n.hardCtx.Err() != nil {
			return
		}
		n.failures.Add(1)
		failed++
		n.countFailed(batch)
		if TooLarge(err) {
			// Waiting would not help: send less, at once.
			n.refused(batch, size, err)
			continue
		}
		var delay time.Duration
		if status.Code(err) == codes.Unimplemented {
			delay = n.cfg.UnimplementedRetry
			if !loggedUnimplemented {
				loggedUnimplemented = true
				n.log.Error(fmt.Sprintf("notify: the app at %s does not implement hangup.notify.v1.DisconnectNotify: %v; retrying every %s",
					n.cfg.Addr, err, delay), "queued", n.depth.Load())
			}
		} else {
			delay = backoffDelay(n.cfg.RetryMin, n.cfg.RetryMax, failed)
			level := slog.LevelDebug
			if failed == 1 {
				level = slog.LevelWarn
			}
			n.log.Log(n.hardCtx, level, "notify: call failed, will retry", "err", err,
				"failed_calls", failed, "retry_in", delay, "queued", n.depth.Load())
		}
		if !n.wait(n.hardCtx, delay) {
			return
		}
	}
}

// nextBatch waits for events and returns copies of the first BatchMax, in
// the sender's buffer that the next call of nextBatch overwrites, each
// with this call counted in attempts. It returns nil when the sender must
// stop.
//
// It never waits for more events by default: the sender calls nextBatch
// only when no call is in flight, so a lone event is sent at once, and the
// events published while a call was in flight, which have waited for it
// already, go together in the next call as soon as it returns. Batches thus
// grow with the event rate by themselves (as grpc-go's loopy writer
// batches frames behind a write), and a burst is never held back by a
// timer. Only a positive BatchDelay holds a batch that is not full, and
// never a retry: its events have waited long enough.
func (n *Notifier) nextBatch(retry bool) []item {
	n.mu.Lock()
	for n.lenLocked() == 0 {
		if n.draining {
			n.mu.Unlock()
			return nil
		}
		n.mu.Unlock()
		select {
		case <-n.wake:
		case <-n.closing:
		case <-n.hardCtx.Done():
			return nil
		}
		n.mu.Lock()
	}
	if !retry && n.cfg.BatchDelay > 0 && n.lenLocked() < n.cfg.BatchMax && !n.draining {
		n.mu.Unlock()
		if !n.hold(n.hardCtx, n.closing, n.cfg.BatchDelay) {
			return nil
		}
		n.mu.Lock()
	}
	k := min(n.lenLocked(), n.cfg.BatchMax)
	batch := n.batchBuf[:0]
	for i := range k {
		batch = append(batch, *n.q.at(i))
		batch[i].attempts++
	}
	n.mu.Unlock()
	n.batchBuf = batch
	return batch
}

// holdBatch waits d for a batch to fill; Close cuts the wait short. It
// returns false when ctx ends: the sender must stop.
func holdBatch(ctx context.Context, closing <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-closing:
	case <-ctx.Done():
		return false
	}
	return true
}

// build converts the front of batch into the request, in the sender's
// reused buffers: as many events as fit in batchBytes encoded bytes (by
// sizeBound, which never counts less than the encoding takes), and always
// the first. It returns the events it took, a prefix of batch.
func (n *Notifier) build(batch []item) []item {
	size, k := 0, 0
	for k < len(batch) {
		sz := sizeBound(&batch[k].ev)
		if k > 0 && size+sz > n.batchBytes {
			break
		}
		size += sz
		k++
	}
	batch = batch[:k]
	for len(n.wire) < k {
		n.wire = append(n.wire, new(wireEvent))
	}
	evs := n.req.Events[:0]
	for i, it := range batch {
		evs = append(evs, n.wire[i].set(it.ev))
	}
	n.req = notifyv1.NotifyRequest{Events: evs}
	return batch
}

// call sends the request build made for batch in one Notify call: grpc has
// encoded it when Notify returns. When the call fails it also returns the
// request's encoded size.
func (n *Notifier) call(batch []item) (int, error) {
	ctx, cancel := context.WithTimeout(n.hardCtx, n.cfg.Timeout)
	defer cancel()
	_, err := n.client.Notify(ctx, &n.req)
	size := 0
	if err != nil {
		size = proto.Size(&n.req)
	}
	// Let the events' strings and maps go while the sender waits.
	clear(n.req.Events)
	for _, w := range n.wire[:len(batch)] {
		w.pe = notifyv1.DisconnectEvent{}
	}
	if err != nil {
		return size, fmt.Errorf("notify %d events (%d bytes) to %s: %w", len(batch), size, n.cfg.Addr, err)
	}
	return 0, nil
}

// countFailed counts a failed call in the attempts of its events still
// queued, which the next batch copies.
func (n *Notifier) countFailed(batch []item) {
	last := batch[len(batch)-1].seq
	n.mu.Lock()
	// Only overflow removed events from the front meanwhile: the queue
	// still starts with the rest of the batch.
	for i := 0; i < n.q.len() && n.q.at(i).seq <= last; i++ {
		n.q.at(i).attempts++
	}
	n.mu.Unlock()
}

// tooLargePhrases are how grpc stacks say that a message exceeds their
// largest accepted size. The status code alone does not tell: an app may
// answer RESOURCE_EXHAUSTED for a quota too, which a retry with backoff
// is the answer to.
var tooLargePhrases = []string{
	"larger than",          // grpc-go, grpc core (C++, Python, Ruby), grpc-js: "received message larger than max (N vs. M)"; connect-go
	"exceeds maximum size", // grpc-java: "gRPC message exceeds maximum size M: N"
	"exceeds the maximum",  // grpc-dotnet: "Received message exceeds the maximum configured message size."
	"too large",            // tonic (OUT_OF_RANGE): "decoded message length too large: found N bytes, the limit is: M bytes"
}

// TooLarge reports whether err is a DisconnectNotify server refusing a
// call as larger than its max receive message size.
func TooLarge(err error) bool {
	// The status itself, not status.FromError's: that one's message is the
	// whole wrapped error's, which says things of its own.
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return false
	}
	st := se.GRPCStatus()
	if st.Code() != codes.ResourceExhausted && st.Code() != codes.OutOfRange {
		return false
	}
	msg := strings.ToLower(st.Message())
	for _, p := range tooLargePhrases {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// refused handles a call of size bytes that the app refused as too large,
// so that the next call is smaller: later calls carry at most half its
// bytes; a single event loses its request headers (marked by
// HeadersDroppedKey), and one that has none left to lose is dropped.
// Nothing waits: the queue must not stall behind a call that cannot
// succeed.
func (n *Notifier) refused(batch []item, size int, err error) {
	if c := size / 2; c < n.batchBytes {
		n.batchBytes = c
		n.log.Warn("notify: the app refused a call as too large; sending smaller calls until it reconnects. Raise the app's max receive message size (grpc's default is 4 MiB)",
			"events", len(batch), "bytes", size, "max_call_bytes", n.batchBytes, "err", err)
	}
	if len(batch) > 1 {
		return
	}
	it := batch[0]
	n.mu.Lock()
	q := n.frontLocked(it.seq)
	switch {
	case q == nil:
		// Overflow dropped it during the call, and counted it.
		n.mu.Unlock()
	case len(q.ev.Headers) > 0 && !q.headersDropped:
		q.ev.Headers = map[string]string{HeadersDroppedKey: "true"}
		q.headersDropped = true
		n.mu.Unlock()
		n.headersDropped.Add(1)
		n.log.Warn("notify: the app refused an event as too large; sending it again without its request headers. Raise the app's max receive message size",
			"event_id", it.ev.ID, "bytes", size, "headers", len(it.ev.Headers), "err", err)
	default:
		n.popLocked()
		n.depth.Store(int64(n.lenLocked()))
		n.notifyFlushLocked()
		n.mu.Unlock()
		n.dropped.Add(1)
		n.log.Error("notify: the app refused an event as too large even without request headers; dropped it. Raise the app's max receive message size",
			"event_id", it.ev.ID, "bytes", size, "err", err)
	}
}

// ack removes a delivered batch from the front of the queue. Events of the
// batch that overflow dropped meanwhile are already gone (and counted as
// dropped, even though the app got them).
func (n *Notifier) ack(batch []item) {
	last := batch[len(batch)-1].seq
	first := last + 1 // the first event of the batch still queued
	count := 0
	n.mu.Lock()
	if n.lenLocked() > 0 {
		first = n.q.at(0).seq
	}
	for n.lenLocked() > 0 && n.q.at(0).seq <= last {
		n.popLocked()
		count++
	}
	n.depth.Store(int64(n.lenLocked()))
	n.delivered.Add(uint64(count))
	n.mu.Unlock()
	if n.cfg.OnDelivered != nil {
		// Overflow drops the oldest events, so those of the batch still
		// queued are its tail: report them from the batch's own copies.
		now := time.Now()
		for _, it := range batch {
			if it.seq >= first {
				n.cfg.OnDelivered(it.ev, it.attempts, now.Sub(it.queuedAt))
			}
		}
	}
	clear(batch) // let the events' strings and maps go
	// Flush returns after the callbacks, so that a flushed event has been
	// reported too.
	n.mu.Lock()
	n.notifyFlushLocked()
	n.mu.Unlock()
}

// logDrops logs overflow drops off the data path, coalescing bursts.
func (n *Notifier) logDrops() {
	defer n.wg.Done()
	for {
		select {
		case <-n.dropWake:
			n.flushDropLog()
		case <-n.logStop:
			n.flushDropLog()
			return
		}
	}
}

func (n *Notifier) flushDropLog() {
	n.mu.Lock()
	ids, extra := n.droppedIDs, n.droppedExtra
	n.droppedIDs, n.droppedExtra = nil, 0
	n.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	n.log.Warn("notify: queue full: dropped the oldest events",
		"count", len(ids)+extra, "event_ids", ids, "ids_not_listed", extra, "queue_size", n.cfg.QueueSize)
}

func (n *Notifier) recordDropLocked(id string) {
	if len(n.droppedIDs) < maxLoggedIDs {
		n.droppedIDs = append(n.droppedIDs, id)
	} else {
		n.droppedExtra++
	}
}

func (n *Notifier) lenLocked() int { return n.q.len() }

// frontLocked returns the queued event seq when it is the first, or nil.
func (n *Notifier) frontLocked(seq uint64) *item {
	if n.lenLocked() == 0 || n.q.at(0).seq != seq {
		return nil
	}
	return n.q.at(0)
}

func (n *Notifier) popLocked() item { return n.q.pop() }

// notifyFlushLocked ends the Flush calls whose events have all left the
// queue.
func (n *Notifier) notifyFlushLocked() {
	kept := n.flushWaiters[:0]
	for _, w := range n.flushWaiters {
		if n.lenLocked() == 0 || n.q.at(0).seq > w.seq {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(n.flushWaiters[len(kept):])
	n.flushWaiters = kept
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// backoffDelay is the delay before retry number failed (1-based): min
// doubled per failure, capped at max, then jittered into [d/2, d] so that
// sidecars restarted together do not call in step.
func backoffDelay(minD, maxD time.Duration, failed int) time.Duration {
	d := maxD
	if failed < 32 {
		if e := minD << (failed - 1); e > 0 && e < maxD {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
