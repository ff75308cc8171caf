package notify

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestNotifier starts a Notifier whose log goes to the returned buffer
// and closes it (with a generous drain) when the test ends.
func newTestNotifier(t *testing.T, cfg Config, wait func(context.Context, time.Duration) bool) (*Notifier, *syncBuffer) {
	t.Helper()
	return newHoldNotifier(t, cfg, wait, holdBatch)
}

// newHoldNotifier is newTestNotifier with the batch hold injected too.
func newHoldNotifier(t *testing.T, cfg Config, wait func(context.Context, time.Duration) bool, hold holdFunc) (*Notifier, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if wait == nil {
		wait = sleepCtx
	}
	n, err := newNotifier(cfg, wait, hold)
	if err != nil {
		t.Fatalf("new notifier: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n, logs
}

// testEvent is event i of connection conn.
func testEvent(conn, i int) Event {
	return Event{
		ID:           fmt.Sprintf("c%d-e%04d", conn, i),
		Scope:        ScopeStream,
		Reason:       ReasonRSTStream,
		Initiator:    InitiatorClient,
		ConnectionID: fmt.Sprintf("c%d", conn),
		StreamID:     uint32(2*i + 1),
		DetectedAt:   time.Unix(1700000000, 0),
	}
}

func ids(evs []*notifyv1.DisconnectEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.GetEventId()
	}
	return out
}

// checkDelivery checks that every published id was accepted, that
// duplicates carry identical content, and that per connection the first
// deliveries keep publish order.
func checkDelivery(t *testing.T, published []Event, accepted []*notifyv1.DisconnectEvent) {
	t.Helper()
	first := map[string]*notifyv1.DisconnectEvent{}
	perConn := map[string][]string{}
	for _, e := range accepted {
		if prev, ok := first[e.GetEventId()]; ok {
			if prev.String() != e.String() {
				t.Errorf("event %s delivered twice with different content:\n%v\n%v", e.GetEventId(), prev, e)
			}
			continue
		}
		first[e.GetEventId()] = e
		perConn[e.GetConnectionId()] = append(perConn[e.GetConnectionId()], e.GetEventId())
	}
	want := map[string][]string{}
	for _, ev := range published {
		want[ev.ConnectionID] = append(want[ev.ConnectionID], ev.ID)
		if _, ok := first[ev.ID]; !ok {
			t.Errorf("event %s was never delivered", ev.ID)
		}
	}
	if len(first) != len(published) {
		t.Errorf("delivered %d distinct events, published %d", len(first), len(published))
	}
	for conn, w := range want {
		if got := strings.Join(perConn[conn], ","); got != strings.Join(w, ",") {
			t.Errorf("connection %s: delivery order\n got %s\nwant %s", conn, got, strings.Join(w, ","))
		}
	}
}

func flush(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := n.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (stats %+v)", err, n.Stats())
	}
}

func TestBatchingKeepsOrderAndLosesNothing(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{})
	const conns, perConn, batchMax = 10, 100, 50
	var delivered sync.Map
	n, _ := newTestNotifier(t, Config{
		Addr:       r.addr,
		BatchMax:   batchMax,
		BatchDelay: 20 * time.Millisecond,
		OnDelivered: func(ev Event, attempts int, latency time.Duration) {
			delivered.Store(ev.ID, attempts)
		},
	}, nil)

	var published []Event
	for i := range perConn {
		for c := range conns {
			ev := testEvent(c, i)
			published = append(published, ev)
			n.Publish(ev)
		}
	}
	flush(t, n)

	calls, batches, accepted := r.snapshot()
	checkDelivery(t, published, accepted)
	if len(accepted) != len(published) {
		t.Errorf("receiver accepted %d events, want exactly %d (no failures, so no duplicates)", len(accepted), len(published))
	}
	// 1000 events in batches of at most 50: at least 20 calls; a 20ms batch
	// delay fills most batches, so far fewer than one call per 5 events.
	if calls < conns*perConn/batchMax || calls > conns*perConn/5 {
		t.Errorf("calls = %d, want between %d and %d", calls, conns*perConn/batchMax, conns*perConn/5)
	}
	for i, b := range batches {
		if len(b) > batchMax {
			t.Errorf("batch %d has %d events, more than BatchMax %d", i, len(b), batchMax)
		}
	}
	st := n.Stats()
	if st.Queued != uint64(len(published)) || st.Delivered != uint64(len(published)) || st.Dropped != 0 || st.QueueDepth != 0 {
		t.Errorf("stats = %+v, want %d queued and delivered, none dropped or waiting", st, len(published))
	}
	count := 0
	delivered.Range(func(_, v any) bool {
		count++
		if v.(int) != 1 {
			t.Errorf("OnDelivered attempts = %v, want 1", v)
		}
		return true
	})
	if count != len(published) {
		t.Errorf("OnDelivered called for %d events, want %d", count, len(published))
	}
}

// TestBatchesOnlyBehindACallInFlight: with the default BatchDelay no batch
// ever waits for more events. A lone event goes at once; events published
// while a call is in flight go together, in one call, as soon as it returns.
func TestBatchesOnlyBehindACallInFlight(t *testing.T) {
	release := make(chan struct{})
	r := startReceiver(t, "127.0.0.1:0", &receiver{
		answer: func(ctx context.Context, call int, _ *notifyv1.NotifyRequest) error {
			if call == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		},
	})
	var held sync.Map
	n, _ := newHoldNotifier(t, Config{Addr: r.addr, BatchMax: 50}, nil,
		func(ctx context.Context, closing <-chan struct{}, d time.Duration) bool {
			held.Store(d, true)
			return holdBatch(ctx, closing, d)
		})

	first := testEvent(0, 0)
	n.Publish(first)
	r.waitUntil(t, "the first call", func(r *receiver) bool { return r.calls == 1 })
	const behind = 80 // more than BatchMax: the second call is full, the third takes the rest
	var published = []Event{first}
	for i := 1; i <= behind; i++ {
		published = append(published, testEvent(i%3, i))
		n.Publish(published[i])
	}
	close(release)
	flush(t, n)

	calls, batches, accepted := r.snapshot()
	checkDelivery(t, published, accepted)
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	if want := []int{1, 50, behind - 50}; calls != 3 || fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Errorf("calls = %d with batch sizes %v, want %v: the first event alone, then what waited behind it", calls, sizes, want)
	}
	held.Range(func(d, _ any) bool {
		t.Errorf("a batch was held %v; with BatchDelay 0 none must wait", d)
		return true
	})
}

// TestBatchDelayHoldsPartialBatches: a positive BatchDelay holds every batch
// that is not full (the old behaviour, kept for apps that want fewer calls),
// but not a full one.
func TestBatchDelayHoldsPartialBatches(t *testing.T) {
	tests := []struct {
		name      string
		events    int
		wantHolds int
	}{
		{name: "lone event is held", events: 1, wantHolds: 1},
		{name: "full batch is not held", events: 10, wantHolds: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startReceiver(t, "127.0.0.1:0", &receiver{})
			var mu sync.Mutex
			var holds []time.Duration
			n, _ := newHoldNotifier(t, Config{Addr: r.addr, BatchMax: 10, BatchDelay: 3 * time.Millisecond}, nil,
				func(ctx context.Context, closing <-chan struct{}, d time.Duration) bool {
					mu.Lock()
					holds = append(holds, d)
					mu.Unlock()
					return true // the fake hold returns at once
				})
			// Queue the events under the lock, as Publish does, so that the
			// sender finds them all at once and the batch is full or not as
			// the case says.
			var published []Event
			n.mu.Lock()
			for i := range tt.events {
				ev := testEvent(0, i)
				ev.DetectedAt = time.Unix(1700000000, 0)
				published = append(published, ev)
				n.q.push(item{ev: ev, seq: n.nextSeq, queuedAt: time.Now()})
				n.nextSeq++
			}
			n.mu.Unlock()
			signal(n.wake)
			flush(t, n)
			_, _, accepted := r.snapshot()
			checkDelivery(t, published, accepted)
			mu.Lock()
			defer mu.Unlock()
			if len(holds) != tt.wantHolds {
				t.Fatalf("held %d batches (%v), want %d", len(holds), holds, tt.wantHolds)
			}
			for _, d := range holds {
				if d != 3*time.Millisecond {
					t.Errorf("held %v, want BatchDelay 3ms", d)
				}
			}
		})
	}
}

func TestReceiverStartsLater(t *testing.T) {
	addr := freeAddr(t)
	failed := make(chan time.Duration, 100)
	n, _ := newTestNotifier(t, Config{
		Addr:     addr,
		Timeout:  100 * time.Millisecond,
		BatchMax: 7,
		RetryMin: time.Millisecond,
		RetryMax: 20 * time.Millisecond,
	}, func(ctx context.Context, d time.Duration) bool {
		select {
		case failed <- d:
		default:
		}
		return sleepCtx(ctx, d)
	})

	var published []Event
	for i := range 30 {
		ev := testEvent(i%3, i)
		published = append(published, ev)
		n.Publish(ev)
	}
	select {
	case <-failed:
	case <-time.After(waitLimit):
		t.Fatal("the notifier never failed a call while nothing listened")
	}

	r := startReceiver(t, addr, &receiver{})
	flush(t, n)
	_, _, accepted := r.snapshot()
	checkDelivery(t, published, accepted)
	if st := n.Stats(); st.Failures == 0 || st.Retries == 0 || st.Delivered != 30 {
		t.Errorf("stats = %+v, want failures and retries counted, 30 delivered", st)
	}
}

func TestRetriesUnavailableThenOK(t *testing.T) {
	tests := []struct {
		name string
		code codes.Code
	}{
		{"unavailable", codes.Unavailable},
		{"deadline exceeded", codes.DeadlineExceeded},
		{"internal", codes.Internal},
		// Not about size (a quota, say): retried with backoff like the rest.
		{"resource exhausted", codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const failures = 3
			// The first call fails only once all five are queued, so that
			// the retries carry them all and the last one delivers them.
			allPublished := make(chan struct{})
			r := startReceiver(t, "127.0.0.1:0", &receiver{
				answer: func(ctx context.Context, call int, _ *notifyv1.NotifyRequest) error {
					if call == 1 {
						select {
						case <-allPublished:
						case <-ctx.Done():
						}
					}
					if call <= failures {
						return status.Errorf(tt.code, "not yet (call %d)", call)
					}
					return nil
				},
			})
			var mu sync.Mutex
			var waits []time.Duration
			attempts := map[string]int{}
			n, _ := newTestNotifier(t, Config{
				Addr:     r.addr,
				RetryMin: 10 * time.Millisecond,
				RetryMax: 40 * time.Millisecond,
				OnDelivered: func(ev Event, a int, _ time.Duration) {
					mu.Lock()
					attempts[ev.ID] = a
					mu.Unlock()
				},
			}, func(ctx context.Context, d time.Duration) bool {
				mu.Lock()
				waits = append(waits, d)
				mu.Unlock()
				return true
			})
			var published []Event
			for i := range 5 {
				published = append(published, testEvent(0, i))
				n.Publish(published[i])
			}
			close(allPublished)
			flush(t, n)

			calls, batches, accepted := r.snapshot()
			checkDelivery(t, published, accepted)
			if calls != failures+1 {
				t.Errorf("calls = %d, want %d", calls, failures+1)
			}
			// A retry carries the failed call's events first, in order, and
			// may add what was queued since (events go at once, so the
			// first call can leave before all five are published).
			carried := map[string]int{}
			for i, b := range batches {
				got, first := strings.Join(ids(b), ","), strings.Join(ids(batches[0]), ",")
				if got != first && !strings.HasPrefix(got, first+",") {
					t.Errorf("call %d carried %s, want the first call's ids first: %s", i+1, got, first)
				}
				for _, id := range ids(b) {
					carried[id]++
				}
			}
			st := n.Stats()
			if st.Retries != failures || st.Failures != failures || st.Delivered != 5 {
				t.Errorf("stats = %+v, want %d retries and failures, 5 delivered", st, failures)
			}
			mu.Lock()
			defer mu.Unlock()
			// Backoff doubles from RetryMin, capped at RetryMax, jittered into [d/2, d].
			for i, d := range waits {
				ceil := min(10*time.Millisecond<<i, 40*time.Millisecond)
				if d < ceil/2 || d > ceil {
					t.Errorf("wait %d = %s, want within [%s, %s]", i+1, d, ceil/2, ceil)
				}
			}
			if len(waits) != failures {
				t.Errorf("waited %d times, want %d", len(waits), failures)
			}
			if len(attempts) != len(published) {
				t.Errorf("OnDelivered for %d events, want %d", len(attempts), len(published))
			}
			for id, a := range attempts {
				if a != carried[id] {
					t.Errorf("event %s: OnDelivered attempts = %d, want %d (the calls that carried it)", id, a, carried[id])
				}
			}
			if a := attempts[published[0].ID]; a != failures+1 {
				t.Errorf("event %s, in every call: OnDelivered attempts = %d, want %d", published[0].ID, a, failures+1)
			}
		})
	}
}

func TestUnimplementedIsRetriedSlowly(t *testing.T) {
	const slow = time.Hour // never actually waited: the wait hook returns at once
	r := startReceiver(t, "127.0.0.1:0", &receiver{
		answer: func(_ context.Context, call int, _ *notifyv1.NotifyRequest) error {
			if call <= 2 {
				return status.Error(codes.Unimplemented, "unknown service hangup.notify.v1.DisconnectNotify")
			}
			return nil
		},
	})
	var mu sync.Mutex
	var waits []time.Duration
	n, logs := newTestNotifier(t, Config{
		Addr:               r.addr,
		RetryMin:           time.Millisecond,
		RetryMax:           time.Millisecond,
		UnimplementedRetry: slow,
	}, func(ctx context.Context, d time.Duration) bool {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return true
	})
	n.Publish(testEvent(0, 0))
	flush(t, n)

	mu.Lock()
	got := fmt.Sprint(waits)
	mu.Unlock()
	if want := fmt.Sprint([]time.Duration{slow, slow}); got != want {
		t.Errorf("retry waits = %s, want %s", got, want)
	}
	wantLog := "the app at " + r.addr + " does not implement hangup.notify.v1.DisconnectNotify"
	if c := strings.Count(logs.String(), wantLog); c != 1 {
		t.Errorf("log has %q %d times, want once; log:\n%s", wantLog, c, logs)
	}
}

func TestUnimplementedServerWithoutService(t *testing.T) {
	// A real grpc server that does not register DisconnectNotify answers
	// UNIMPLEMENTED by itself.
	bare := startBareServer(t)
	waited := make(chan time.Duration, 1)
	n, logs := newTestNotifier(t, Config{Addr: bare, UnimplementedRetry: 42 * time.Minute}, func(ctx context.Context, d time.Duration) bool {
		waited <- d
		<-ctx.Done() // hold until Close gives up
		return false
	})
	n.Publish(testEvent(0, 0))
	select {
	case d := <-waited:
		if d != 42*time.Minute {
			t.Errorf("retry wait = %s, want UnimplementedRetry 42m", d)
		}
	case <-time.After(waitLimit):
		t.Fatal("no retry wait after UNIMPLEMENTED")
	}
	if !strings.Contains(logs.String(), "does not implement hangup.notify.v1.DisconnectNotify") {
		t.Errorf("log lacks the UNIMPLEMENTED explanation:\n%s", logs)
	}
}

func TestOverflowDropsOldest(t *testing.T) {
	release := make(chan struct{})
	r := startReceiver(t, "127.0.0.1:0", &receiver{
		answer: func(ctx context.Context, call int, _ *notifyv1.NotifyRequest) error {
			if call == 1 {
				<-release
			}
			return nil
		},
	})
	const queueSize, total = 10, 25
	n, logs := newTestNotifier(t, Config{Addr: r.addr, QueueSize: queueSize, BatchMax: 3}, nil)

	var published []Event
	for i := range total {
		published = append(published, testEvent(0, i))
	}
	n.Publish(published[0])
	r.waitUntil(t, "the first call", func(r *receiver) bool { return r.calls == 1 })
	for _, ev := range published[1:] {
		n.Publish(ev)
	}
	st := n.Stats()
	if st.Dropped != total-queueSize || st.QueueDepth != queueSize {
		t.Errorf("after overflow stats = %+v, want %d dropped, %d waiting", st, total-queueSize, queueSize)
	}
	close(release)
	flush(t, n)

	_, batches, accepted := r.snapshot()
	// The first call carried event 0 (dropped meanwhile, but the app had it);
	// then the newest queueSize events, in order.
	var want []string
	want = append(want, published[0].ID)
	for _, ev := range published[total-queueSize:] {
		want = append(want, ev.ID)
	}
	if got := strings.Join(ids(accepted), ","); got != strings.Join(want, ",") {
		t.Errorf("accepted\n got %s\nwant %s", got, strings.Join(want, ","))
	}
	if len(batches[0]) != 1 {
		t.Errorf("first batch has %d events, want 1", len(batches[0]))
	}
	st = n.Stats()
	if st.Dropped != total-queueSize || st.Delivered != queueSize || st.Queued != total {
		t.Errorf("stats = %+v, want %d queued, %d dropped, %d delivered", st, total, total-queueSize, queueSize)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := n.Close(closeCtx); err != nil {
		t.Errorf("close: %v", err)
	}
	// Close stopped the drop logger after it logged everything.
	out := logs.String()
	for _, ev := range published[:total-queueSize] {
		if !strings.Contains(out, ev.ID) {
			t.Errorf("dropped event %s is not in the log:\n%s", ev.ID, out)
		}
	}
	for _, ev := range published[total-queueSize:] {
		if strings.Contains(out, ev.ID) {
			t.Errorf("kept event %s is logged as dropped:\n%s", ev.ID, out)
		}
	}
}

// TestOnDeliveredSkipsEventsDroppedInFlight: overflow drops the oldest
// event of the batch in flight; when the call returns OK, OnDelivered
// reports the batch's events still queued and not the dropped one.
func TestOnDeliveredSkipsEventsDroppedInFlight(t *testing.T) {
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	r := startReceiver(t, "127.0.0.1:0", &receiver{
		answer: func(ctx context.Context, call int, _ *notifyv1.NotifyRequest) error {
			if call <= len(release) {
				<-release[call-1]
			}
			return nil
		},
	})
	var mu sync.Mutex
	var reported []string
	n, _ := newTestNotifier(t, Config{Addr: r.addr, QueueSize: 6, BatchMax: 4,
		OnDelivered: func(ev Event, _ int, _ time.Duration) {
			mu.Lock()
			reported = append(reported, ev.ID)
			mu.Unlock()
		}}, nil)
	var published []Event
	for i := range 8 {
		published = append(published, testEvent(0, i))
	}
	n.Publish(published[0]) // call 1: e0
	r.waitUntil(t, "the first call", func(r *receiver) bool { return r.calls == 1 })
	for _, ev := range published[1:5] {
		n.Publish(ev)
	}
	close(release[0]) // call 2: e1..e4
	r.waitUntil(t, "the second call", func(r *receiver) bool { return r.calls == 2 })
	for _, ev := range published[5:] {
		n.Publish(ev) // seven queued, six fit: e1 is dropped while in flight
	}
	close(release[1])
	flush(t, n)

	mu.Lock()
	defer mu.Unlock()
	want := []string{published[0].ID, published[2].ID, published[3].ID, published[4].ID, published[5].ID, published[6].ID, published[7].ID}
	if got := strings.Join(reported, ","); got != strings.Join(want, ",") {
		t.Errorf("OnDelivered reported\n got %s\nwant %s", got, strings.Join(want, ","))
	}
	if st := n.Stats(); st.Dropped != 1 || st.Delivered != 7 {
		t.Errorf("stats = %+v, want 1 dropped, 7 delivered", st)
	}
}

func TestPublishNeverBlocksOnHungReceiver(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{
		answer: func(ctx context.Context, _ int, _ *notifyv1.NotifyRequest) error {
			<-ctx.Done() // hang for the whole call timeout
			return status.FromContextError(ctx.Err()).Err()
		},
	})
	const queueSize = 1000
	n, _ := newTestNotifier(t, Config{Addr: r.addr, QueueSize: queueSize, Timeout: time.Hour}, nil)
	n.Publish(testEvent(0, 0))
	r.waitUntil(t, "the hung call", func(r *receiver) bool { return r.calls == 1 })

	const total = 5 * queueSize
	for i := 1; i < total; i++ {
		n.Publish(testEvent(i%7, i))
	}
	// Publish returned total times while the only call is still hanging.
	if calls, _, accepted := r.snapshot(); calls != 1 || len(accepted) != 0 {
		t.Fatalf("receiver saw %d calls, accepted %d events; want 1 hung call", calls, len(accepted))
	}
	if st := n.Stats(); st.Queued != total || st.Dropped != total-queueSize {
		t.Errorf("stats = %+v, want %d queued, %d dropped", st, total, total-queueSize)
	}

	// Close gives up on the hung call when its ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := n.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d events not delivered", queueSize)) {
		t.Errorf("close = %v, want %d events not delivered", err, queueSize)
	}
	if st := n.Stats(); st.Dropped != total || st.Delivered != 0 || st.QueueDepth != 0 {
		t.Errorf("after close stats = %+v, want all %d dropped", st, total)
	}
	n.Publish(testEvent(0, total))
	if st := n.Stats(); st.Dropped != total+1 {
		t.Errorf("publish after close: dropped = %d, want %d", st.Dropped, total+1)
	}
}

func TestCloseFlushesPending(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{})
	n, _ := newTestNotifier(t, Config{Addr: r.addr, BatchMax: 10, BatchDelay: time.Hour}, nil)
	var published []Event
	for i := range 95 {
		published = append(published, testEvent(i%2, i))
		n.Publish(published[i])
	}
	// BatchDelay is an hour: only Close's drain sends the last, partial batch.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, _, accepted := r.snapshot()
	checkDelivery(t, published, accepted)
	if err := n.Close(ctx); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestDisabledNotifier(t *testing.T) {
	n, err := New(Config{})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	n.Publish(testEvent(0, 0))
	if st := n.Stats(); st != (Stats{}) {
		t.Errorf("stats = %+v, want zero", st)
	}
	if err := n.Flush(context.Background()); err != nil {
		t.Errorf("flush: %v", err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	path := t.TempDir() + "/notify.sock"
	r := startReceiverOn(t, "unix", path, &receiver{})
	n, _ := newTestNotifier(t, Config{Addr: "unix://" + path}, nil)
	ev := testEvent(0, 0)
	n.Publish(ev)
	flush(t, n)
	_, _, accepted := r.snapshot()
	checkDelivery(t, []Event{ev}, accepted)
}

func TestPublishFillsIDAndDetectedAt(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{})
	n, _ := newTestNotifier(t, Config{Addr: r.addr}, nil)
	before := time.Now()
	n.Publish(Event{Scope: ScopeConnection, Reason: ReasonShutdown, ConnectionID: "c1"})
	n.Publish(Event{Scope: ScopeConnection, Reason: ReasonShutdown, ConnectionID: "c2"})
	flush(t, n)
	_, _, accepted := r.snapshot()
	if len(accepted) != 2 {
		t.Fatalf("accepted %d events, want 2", len(accepted))
	}
	if a, b := accepted[0].GetEventId(), accepted[1].GetEventId(); len(a) != 32 || a == b {
		t.Errorf("event ids %q, %q: want two distinct generated ids", a, b)
	}
	for _, e := range accepted {
		if d := e.GetDetectedAt().AsTime(); d.Before(before.Truncate(time.Microsecond)) || d.After(time.Now()) {
			t.Errorf("detected_at = %s, want the time of Publish", d)
		}
	}
}

func TestReceiverRestarts(t *testing.T) {
	first := startReceiver(t, "127.0.0.1:0", &receiver{})
	failed := make(chan struct{}, 1)
	n, _ := newTestNotifier(t, fastRetry(first.addr), func(ctx context.Context, d time.Duration) bool {
		select {
		case failed <- struct{}{}:
		default:
		}
		return sleepCtx(ctx, d)
	})
	var published []Event
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ev := testEvent(i%2, i)
			published = append(published, ev)
			n.Publish(ev)
		}
	}
	publish(0, 10)
	flush(t, n)

	first.stop()
	publish(10, 20)
	select {
	case <-failed:
	case <-time.After(waitLimit):
		t.Fatal("the notifier never failed a call while the app was down")
	}
	publish(20, 30)
	second := startReceiver(t, first.addr, &receiver{})
	flush(t, n)

	_, _, a1 := first.snapshot()
	_, _, a2 := second.snapshot()
	checkDelivery(t, published, append(a1, a2...))
}

// isIncarnation reports whether e is the event that names inc live.
func isIncarnation(e *notifyv1.DisconnectEvent, inc string) bool {
	return e.GetScope() == notifyv1.Scope_SCOPE_SIDECAR && e.GetReason() == notifyv1.Reason_REASON_SIDECAR_RESTART &&
		e.GetInitiator() == notifyv1.Initiator_INITIATOR_SIDECAR && e.GetIncarnation() == inc &&
		e.GetConnectionId() == "" && e.GetStreamId() == 0 && e.GetEventId() != "" && e.GetDetectedAt() != nil
}

// TestAnnounceNamesTheLiveIncarnationFirst: the first event an app gets from
// a new sidecar process names its incarnation, and every later event
// carries it too.
func TestAnnounceNamesTheLiveIncarnationFirst(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{})
	n, _ := newTestNotifier(t, Config{Addr: r.addr}, nil)
	n.announce()
	ev := testEvent(0, 1)
	ev.ConnectionID = event.Incarnation() + "-1"
	n.Publish(ev)
	flush(t, n)

	_, _, accepted := r.snapshot()
	if len(accepted) != 2 {
		t.Fatalf("accepted %d events (%v), want the incarnation event and the stream event", len(accepted), ids(accepted))
	}
	if !isIncarnation(accepted[0], event.Incarnation()) {
		t.Errorf("first event = %v, want SCOPE_SIDECAR REASON_SIDECAR_RESTART naming %s", accepted[0], event.Incarnation())
	}
	if got := accepted[1].GetIncarnation(); got != event.Incarnation() {
		t.Errorf("stream event carries incarnation %q, want %q", got, event.Incarnation())
	}
}

// fastRetry is the config of a notifier whose app restarts during a test:
// short calls and retries, so that the new app is reached at once.
func fastRetry(addr string) Config {
	return Config{Addr: addr, Timeout: 100 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond}
}

// TestAnnounceAgainAfterReconnect: when the app comes back (a restart of the
// app, or of the channel), it is told the live incarnation again without
// any other event to carry it.
func TestAnnounceAgainAfterReconnect(t *testing.T) {
	first := startReceiver(t, "127.0.0.1:0", &receiver{})
	n, logs := newTestNotifier(t, fastRetry(first.addr), nil)
	n.announce()
	first.waitUntil(t, "the first incarnation event", func(r *receiver) bool { return len(r.accepted) == 1 })
	first.stop()

	second := startReceiver(t, first.addr, &receiver{})
	// The first event to arrive may be the first announcement again, its
	// answer lost with the first receiver (at least once); the one the
	// reconnection adds is published after its log line.
	second.waitUntil(t, "the incarnation event after the reconnection", func(r *receiver) bool {
		return len(r.accepted) >= 1 && strings.Contains(logs.String(), "naming the live incarnation again")
	})
	_, _, accepted := second.snapshot()
	for _, e := range accepted {
		if !isIncarnation(e, event.Incarnation()) {
			t.Errorf("after the reconnection the app got %v, want only incarnation events", e)
		}
	}
	if !strings.Contains(logs.String(), "naming the live incarnation again") {
		t.Errorf("no log line for the reconnection; logs:\n%s", logs)
	}
}

// TestCallsGrowBackWhenTheAppReconnects: after the app refused calls as
// too large the notifier sends smaller ones, but once the app is back from
// a restart, perhaps with a larger receive limit, a call may carry 1 MiB
// again.
func TestCallsGrowBackWhenTheAppReconnects(t *testing.T) {
	large := func(i int) Event {
		ev := testEvent(0, i)
		ev.Headers = largeHeaders()
		return ev
	}
	batch := func(from, to int) []Event {
		var evs []Event
		for i := from; i < to; i++ {
			evs = append(evs, large(i))
		}
		return evs
	}
	first := startReceiverOn(t, "tcp", "127.0.0.1:0", &receiver{}, grpc.MaxRecvMsgSize(120<<10))
	n, logs := newTestNotifier(t, fastRetry(first.addr), nil)
	n.announce() // starts the watcher
	queueAll(n, batch(0, 7))
	flush(t, n)
	if !strings.Contains(logs.String(), "sending smaller calls") {
		t.Fatalf("the first app never refused a call; logs:\n%s", logs)
	}
	first.stop()

	second := startReceiver(t, first.addr, &receiver{}) // grpc's default limit, 4 MiB
	second.waitUntil(t, "the incarnation event after the reconnection", func(r *receiver) bool {
		return len(r.accepted) >= 1 && strings.Contains(logs.String(), "naming the live incarnation again")
	})
	queueAll(n, batch(7, 14)) // about 345 KB
	flush(t, n)
	_, batches, _ := second.snapshot()
	for _, b := range batches {
		if got := ids(b); slices.Contains(got, "c0-e0007") {
			if len(got) < 7 {
				t.Errorf("after the reconnection the events went %d to a call (%v), want all 7 in one: the calls did not grow back", len(got), got)
			}
			return
		}
	}
	t.Errorf("the second app never got event c0-e0007")
}

// TestDisabledNotifierAnnouncesNothing: without an address nothing starts.
func TestDisabledNotifierAnnouncesNothing(t *testing.T) {
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.Queued != 0 {
		t.Errorf("disabled notifier queued %d events, want 0", st.Queued)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
}

// largeHeaders is about 48 KiB of request headers: with BatchMax 100, a
// full batch of such events is larger than the 4 MiB a grpc server accepts
// by default.
func largeHeaders() map[string]string {
	h := make(map[string]string)
	for i := range 6 {
		h[fmt.Sprintf("x-large-%d", i)] = strings.Repeat(string(rune('a'+i)), 8<<10)
	}
	return h
}

// TestBurstOfLargeEventsIsDelivered: a burst of events with large headers
// reaches an app with grpc's default limits, every event once and in
// order. Batches of BatchMax such events exceed the app's 4 MiB limit; a
// batch refused for its size must not block the queue.
func TestBurstOfLargeEventsIsDelivered(t *testing.T) {
	r := startReceiver(t, "127.0.0.1:0", &receiver{})
	n, _ := newTestNotifier(t, Config{Addr: r.addr}, nil)
	headers := largeHeaders()
	const total = 250
	var published []Event
	for i := range total {
		ev := testEvent(0, i)
		ev.Headers = headers
		published = append(published, ev)
		n.Publish(ev)
	}
	flush(t, n)

	_, _, accepted := r.snapshot()
	checkDelivery(t, published, accepted)
	if len(accepted) != total {
		t.Errorf("receiver accepted %d events, want exactly %d", len(accepted), total)
	}
	for _, e := range accepted {
		if len(e.GetHeaders()) != len(headers) {
			t.Fatalf("event %s arrived with %d headers, want its %d", e.GetEventId(), len(e.GetHeaders()), len(headers))
		}
	}
	if st := n.Stats(); st.Delivered != total || st.Dropped != 0 || st.Failures != 0 || st.HeadersDropped != 0 {
		t.Errorf("stats = %+v, want %d delivered, no failures, none dropped", st, total)
	}
	_, batches, _ := r.snapshot()
	for i, b := range batches {
		if size := proto.Size(&notifyv1.NotifyRequest{Events: b}); size > MaxCallBytes {
			t.Errorf("call %d carried %d events in %d bytes, more than MaxCallBytes %d", i+1, len(b), size, MaxCallBytes)
		}
	}
	// About 21 events fit in 1 MiB: the cap, not a lone event per call,
	// keeps the calls within the limit.
	if len(batches) > total/10 {
		t.Errorf("%d calls for %d events, want batches of about 20", len(batches), total)
	}
}

// queueAll queues evs at once, under the lock as Publish does, so that the
// sender finds them all and its first batch holds them all.
func queueAll(n *Notifier, evs []Event) {
	n.mu.Lock()
	for _, ev := range evs {
		n.q.push(item{ev: ev, seq: n.nextSeq, queuedAt: time.Now()})
		n.nextSeq++
	}
	n.depth.Store(int64(n.lenLocked()))
	n.mu.Unlock()
	n.queued.Add(uint64(len(evs)))
	signal(n.wake)
}

// TestAppRefusesCallsAsTooLarge: an app whose max receive message size is
// below MaxCallBytes refuses calls; the notifier sends smaller ones at
// once, then a lone event without its headers, and drops (counted and
// logged) only an event too large even without them. The queue never
// stalls and the order is kept.
func TestAppRefusesCallsAsTooLarge(t *testing.T) {
	small := func(i int) Event { return testEvent(0, i) }
	large := func(i int) Event {
		ev := testEvent(0, i)
		ev.Headers = largeHeaders()
		return ev
	}
	huge := func(i int) Event { // too large without its headers too
		ev := large(i)
		ev.Method = "/" + strings.Repeat("m", 32<<10)
		return ev
	}
	marker := map[string]string{HeadersDroppedKey: "true"}
	tests := []struct {
		name     string
		limit    int // the app's max receive message size
		events   []Event
		want     []string        // ids delivered, in order, each once
		stripped map[string]bool // ids delivered with only the marker for headers
		attempts map[string]int  // OnDelivered's, for the ids listed
		stats    Stats           // Delivered, Dropped, Failures, HeadersDropped
		logs     []string        // in the log
	}{
		{
			name:   "batches shrink until the app takes them",
			limit:  120 << 10,
			events: []Event{large(0), large(1), large(2), large(3), large(4), large(5), large(6)},
			want:   []string{"c0-e0000", "c0-e0001", "c0-e0002", "c0-e0003", "c0-e0004", "c0-e0005", "c0-e0006"},
			// [0..6] (~345 KB) refused, so calls of at most ~172 KB:
			// [0..2] (~148 KB) refused, so calls of at most ~74 KB: one
			// event (~49 KB) at a time, taken.
			attempts: map[string]int{"c0-e0000": 3, "c0-e0002": 3, "c0-e0003": 2, "c0-e0006": 2},
			stats:    Stats{Delivered: 7, Failures: 2},
			logs:     []string{"sending smaller calls", "max_call_bytes="},
		},
		{
			name:     "a lone event too large goes without its headers",
			limit:    16 << 10,
			events:   []Event{small(0), large(1), small(2)},
			want:     []string{"c0-e0000", "c0-e0001", "c0-e0002"},
			stripped: map[string]bool{"c0-e0001": true},
			// [0 1 2] refused; [0] taken; [1] refused; [1 without headers, 2] taken.
			attempts: map[string]int{"c0-e0000": 2, "c0-e0001": 3, "c0-e0002": 2},
			stats:    Stats{Delivered: 3, Failures: 2, HeadersDropped: 1},
			logs:     []string{"sending it again without its request headers", "event_id=c0-e0001"},
		},
		{
			name:   "an event too large without headers is dropped",
			limit:  16 << 10,
			events: []Event{small(0), huge(1), small(2)},
			want:   []string{"c0-e0000", "c0-e0002"},
			// [0 1 2] refused; [0] taken; [1] refused; [1 without headers,
			// 2] refused; [1 without headers] refused and dropped; [2] taken.
			attempts: map[string]int{"c0-e0000": 2, "c0-e0002": 3},
			stats:    Stats{Delivered: 2, Dropped: 1, Failures: 4, HeadersDropped: 1},
			logs:     []string{"even without request headers; dropped it", "event_id=c0-e0001", "Raise the app's max receive message size"},
		},
		{
			name:   "an event too large with no headers is dropped at once",
			limit:  16 << 10,
			events: []Event{small(0), func() Event { ev := huge(1); ev.Headers = nil; return ev }(), small(2)},
			want:   []string{"c0-e0000", "c0-e0002"},
			// [0 1 2] refused; [0] taken; [1] refused and dropped; [2] taken.
			attempts: map[string]int{"c0-e0000": 2, "c0-e0002": 2},
			stats:    Stats{Delivered: 2, Dropped: 1, Failures: 2},
			logs:     []string{"even without request headers; dropped it", "event_id=c0-e0001"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startReceiverOn(t, "tcp", "127.0.0.1:0", &receiver{}, grpc.MaxRecvMsgSize(tt.limit))
			var mu sync.Mutex
			attempts := map[string]int{}
			n, logs := newTestNotifier(t, Config{Addr: r.addr,
				OnDelivered: func(ev Event, a int, _ time.Duration) {
					mu.Lock()
					attempts[ev.ID] = a
					mu.Unlock()
				}}, func(context.Context, time.Duration) bool {
				t.Error("the notifier waited to retry a call refused as too large")
				return true
			})
			queueAll(n, tt.events)
			flush(t, n)

			_, batches, accepted := r.snapshot()
			if got := strings.Join(ids(accepted), ","); got != strings.Join(tt.want, ",") {
				t.Errorf("accepted\n got %s\nwant %s", got, strings.Join(tt.want, ","))
			}
			sent := map[string]Event{}
			for _, ev := range tt.events {
				sent[ev.ID] = ev
			}
			for _, e := range accepted {
				id := e.GetEventId()
				if tt.stripped[id] {
					if !maps.Equal(e.GetHeaders(), marker) {
						t.Errorf("event %s arrived with %d headers, want only %v", id, len(e.GetHeaders()), marker)
					}
				} else if !maps.Equal(e.GetHeaders(), sent[id].Headers) {
					t.Errorf("event %s arrived with %d headers, want its %d", id, len(e.GetHeaders()), len(sent[id].Headers))
				}
			}
			for i, b := range batches {
				if size := proto.Size(&notifyv1.NotifyRequest{Events: b}); size > tt.limit {
					t.Errorf("the app took call %d of %d bytes, above its limit %d", i+1, size, tt.limit)
				}
			}
			st := n.Stats()
			if got := (Stats{Delivered: st.Delivered, Dropped: st.Dropped, Failures: st.Failures, HeadersDropped: st.HeadersDropped}); got != tt.stats {
				t.Errorf("stats = %+v, want %+v", got, tt.stats)
			}
			if st.QueueDepth != 0 {
				t.Errorf("queue depth %d after the flush, want 0", st.QueueDepth)
			}
			mu.Lock()
			for id, want := range tt.attempts {
				if attempts[id] != want {
					t.Errorf("event %s: OnDelivered attempts = %d, want %d (the calls that carried it)", id, attempts[id], want)
				}
			}
			mu.Unlock()
			out := logs.String()
			for _, l := range tt.logs {
				if !strings.Contains(out, l) {
					t.Errorf("log lacks %q:\n%s", l, out)
				}
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"grpc-go", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5039000 vs. 4194304)"), true},
		{"grpc core and grpc-js", status.Error(codes.ResourceExhausted, "Received message larger than max (5039000 vs 4194304)"), true},
		{"grpc-java", status.Error(codes.ResourceExhausted, "gRPC message exceeds maximum size 4194304: 5039000"), true},
		{"grpc-dotnet", status.Error(codes.ResourceExhausted, "Received message exceeds the maximum configured message size."), true},
		{"tonic", status.Error(codes.OutOfRange, "Error, decoded message length too large: found 5039000 bytes, the limit is: 4194304 bytes"), true},
		{"connect-go", status.Error(codes.ResourceExhausted, "message size 5039000 is larger than configured max 4194304"), true},
		{"wrapped", fmt.Errorf("notify 100 events to 127.0.0.1:15091: %w", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5039000 vs. 4194304)")), true},
		{"a quota", status.Error(codes.ResourceExhausted, "rate limit exceeded, try again later"), false},
		{"another code", status.Error(codes.Internal, "decoded message length too large"), false},
		{"no error", nil, false},
		{"not a status", fmt.Errorf("message larger than max"), false},
		{"only the wrapping says so", fmt.Errorf("event too large: %w", status.Error(codes.ResourceExhausted, "quota")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TooLarge(tt.err); got != tt.want {
				t.Errorf("TooLarge(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestBuildCapsBatchBytes: build takes the events whose sizeBound fits in
// batchBytes, and at least one.
func TestBuildCapsBatchBytes(t *testing.T) {
	withHeaders := func(i, size int) item {
		ev := testEvent(0, i)
		ev.Headers = map[string]string{"x-h": strings.Repeat("h", size)}
		return item{ev: ev, seq: uint64(i)}
	}
	batch := []item{withHeaders(0, 1000), withHeaders(1, 1000), withHeaders(2, 1000), withHeaders(3, 200000)}
	one := sizeBound(&batch[0].ev)
	tests := []struct {
		name       string
		batchBytes int
		want       int
	}{
		{name: "all fit", batchBytes: MaxCallBytes, want: 4},
		{name: "cap between events", batchBytes: 2*one + one/2, want: 2},
		{name: "cap exactly two", batchBytes: 2 * one, want: 2},
		{name: "the first always goes", batchBytes: 1, want: 1},
		{name: "a large event waits for the next call", batchBytes: 3*one + 1000, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Notifier{batchBytes: tt.batchBytes}
			got := n.build(batch)
			if len(got) != tt.want || len(n.req.Events) != tt.want {
				t.Fatalf("took %d events (request has %d), want %d", len(got), len(n.req.Events), tt.want)
			}
			for i, pe := range n.req.Events {
				if pe.GetEventId() != batch[i].ev.ID {
					t.Errorf("request event %d is %s, want %s", i, pe.GetEventId(), batch[i].ev.ID)
				}
			}
			if size := proto.Size(&n.req); tt.want > 1 && size > tt.batchBytes {
				t.Errorf("request of %d events is %d bytes, above batchBytes %d", tt.want, size, tt.batchBytes)
			}
		})
	}
}
