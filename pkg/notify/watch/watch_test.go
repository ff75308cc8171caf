package watch

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
)

// waitLimit bounds every wait for a condition in these tests.
const waitLimit = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveHub starts a Hub with buffer size n on 127.0.0.1 and returns it, a
// client connected to it, and what it handed on to the next sink.
func serveHub(t testing.TB, n int) (*Hub, notifyv1.DisconnectWatchClient, *recorder) {
	t.Helper()
	rec := &recorder{}
	h, err := New(Config{Buffer: n}, rec)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		h.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h, notifyv1.NewDisconnectWatchClient(cc), rec
}

type recorder struct {
	mu  sync.Mutex
	evs []event.Event
}

func (r *recorder) Publish(ev event.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// publish publishes n RST_STREAM events on connection "c" with stream ids
// from first on.
func publish(h *Hub, first, n int) {
	for i := range n {
		h.Publish(event.Event{Scope: event.ScopeStream, Reason: event.ReasonRSTStream, ConnectionID: "c", StreamID: uint32(first + i)})
	}
}

// watchFrom opens a Watch stream and returns a function that reads the
// next response, failing the test after waitLimit.
func watchFrom(t *testing.T, c notifyv1.DisconnectWatchClient, inc string, after uint64) (next func() *notifyv1.WatchResponse, stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	s, err := c.Watch(ctx, &notifyv1.WatchRequest{Incarnation: inc, AfterSequence: after})
	if err != nil {
		t.Fatal(err)
	}
	next = func() *notifyv1.WatchResponse {
		t.Helper()
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("Watch Recv: %v", err)
		}
		return r
	}
	return next, cancel
}

func TestWatchStreamsLiveEventsInOrder(t *testing.T) {
	h, c, rec := serveHub(t, 100)
	next, _ := watchFrom(t, c, "", 0)
	first := next()
	if first.GetSequence() != 1 || first.GetEvent().GetScope() != notifyv1.Scope_SCOPE_SIDECAR ||
		first.GetEvent().GetIncarnation() != h.Incarnation() || first.GetMissedBefore() != 0 {
		t.Fatalf("first response %v, want sequence 1, the SCOPE_SIDECAR event of %s", first, h.Incarnation())
	}
	publish(h, 1, 5)
	for i := range 5 {
		r := next()
		if r.GetSequence() != uint64(i+2) || r.GetEvent().GetStreamId() != uint32(i+1) || r.GetMissedBefore() != 0 {
			t.Fatalf("response %d: %v, want sequence %d for stream %d", i, r, i+2, i+1)
		}
		rec.mu.Lock()
		handed := rec.evs[i]
		rec.mu.Unlock()
		if r.GetEvent().GetEventId() != handed.ID || handed.ID == "" || handed.Incarnation != h.Incarnation() || handed.DetectedAt.IsZero() {
			t.Fatalf("watched event %s, the next sink got %+v: want the same stamped event", r.GetEvent().GetEventId(), handed)
		}
	}
}

func TestWatchResume(t *testing.T) {
	tests := []struct {
		name        string
		buffer      int
		published   int // events after the SCOPE_SIDECAR one, while away
		inc         func(h *Hub) string
		after       uint64
		wantFirst   uint64 // sequence of the first event received
		wantMissed  uint64
		wantThrough uint64 // sequence of the last event received
	}{
		{name: "resume within the buffer loses nothing", buffer: 100, published: 50,
			inc: (*Hub).Incarnation, after: 10, wantFirst: 11, wantThrough: 51},
		{name: "fresh watcher gets the whole buffer", buffer: 100, published: 20,
			inc: func(*Hub) string { return "" }, after: 0, wantFirst: 1, wantThrough: 21},
		{name: "other incarnation starts at this one's first", buffer: 100, published: 20,
			inc: func(*Hub) string { return "OLDINCAR" }, after: 7, wantFirst: 1, wantThrough: 21},
		{name: "gap beyond the buffer is reported", buffer: 8, published: 30,
			inc: (*Hub).Incarnation, after: 3, wantFirst: 24, wantMissed: 20, wantThrough: 31},
		{name: "fresh watcher after overflow is told", buffer: 8, published: 30,
			inc: func(*Hub) string { return "" }, after: 0, wantFirst: 24, wantMissed: 23, wantThrough: 31},
		{name: "resume at the newest waits for new ones", buffer: 8, published: 3,
			inc: (*Hub).Incarnation, after: 4, wantFirst: 5, wantThrough: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c, _ := serveHub(t, tt.buffer)
			publish(h, 1, tt.published)
			next, _ := watchFrom(t, c, tt.inc(h), tt.after)
			if tt.wantThrough > uint64(tt.published)+1 {
				publish(h, tt.published+1, int(tt.wantThrough)-tt.published-1)
			}
			r := next()
			if r.GetSequence() != tt.wantFirst || r.GetMissedBefore() != tt.wantMissed {
				t.Fatalf("first response: sequence %d missed_before %d, want %d and %d", r.GetSequence(), r.GetMissedBefore(), tt.wantFirst, tt.wantMissed)
			}
			for seq := tt.wantFirst + 1; seq <= tt.wantThrough; seq++ {
				if r = next(); r.GetSequence() != seq || r.GetMissedBefore() != 0 {
					t.Fatalf("response: sequence %d missed_before %d, want %d and 0", r.GetSequence(), r.GetMissedBefore(), seq)
				}
			}
		})
	}
}

// TestSlowWatcherIsToldOfWhatItMissed: events published faster than the
// watcher reads overflow the buffer; every sequence is then either received
// or counted in missed_before, never silently skipped.
func TestSlowWatcherIsToldOfWhatItMissed(t *testing.T) {
	const buffer, total = 16, 5000
	h, c, _ := serveHub(t, buffer)
	next, _ := watchFrom(t, c, h.Incarnation(), 1)
	publish(h, 1, total)
	var accounted, missed uint64 = 1, 0
	for accounted < total+1 {
		r := next()
		if r.GetSequence() != accounted+r.GetMissedBefore()+1 {
			t.Fatalf("sequence %d after %d with missed_before %d: a hole nobody reported", r.GetSequence(), accounted, r.GetMissedBefore())
		}
		missed += r.GetMissedBefore()
		accounted = r.GetSequence()
	}
	t.Logf("%d of %d events missed by a watcher reading behind a %d-event buffer", missed, total, buffer)
}

// TestCounters: watchers open now, events sent, and gaps reported with
// the events they cover, as the metrics show them.
func TestCounters(t *testing.T) {
	h, c, _ := serveHub(t, 8)
	publish(h, 1, 30) // sequences 2..31; the buffer holds 24..31
	next, stop := watchFrom(t, c, h.Incarnation(), 3)
	for range 8 {
		next()
	}
	if got, want := h.Counters(), (Counters{Watchers: 1, Sent: 8, Gaps: 1, Missed: 20}); got != want {
		t.Errorf("Counters() with one watcher that resumed across a gap = %+v, want %+v", got, want)
	}
	stop()
	// The server sees the cancel asynchronously: poll, up to a deadline.
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for h.Counters().Watchers != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Counters().Watchers = %d %v after the watcher left, want 0", h.Counters().Watchers, waitLimit)
		}
		<-tick.C
	}
}

func TestWatchRejectsAFutureSequence(t *testing.T) {
	h, c, _ := serveHub(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s, err := c.Watch(ctx, &notifyv1.WatchRequest{Incarnation: h.Incarnation(), AfterSequence: 99})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Watch after sequence 99 of 1: %v, want INVALID_ARGUMENT", err)
	}
}

func TestCloseEndsWatchers(t *testing.T) {
	h, c, _ := serveHub(t, 8)
	next, _ := watchFrom(t, c, "", 0)
	next() // connected: the SCOPE_SIDECAR event came
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s, err := c.Watch(ctx, &notifyv1.WatchRequest{Incarnation: h.Incarnation(), AfterSequence: 1})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := s.Recv(); err == nil || ctx.Err() != nil {
		t.Fatalf("Recv after Close: %v, want the stream ended by the server", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{name: "off", cfg: Config{}},
		{name: "suggested", cfg: Config{Addr: SuggestedAddr, Buffer: 5}},
		{name: "unix", cfg: Config{Addr: "unix:///run/hangup/watch.sock"}},
		{name: "bad addr", cfg: Config{Addr: "localhost"}, want: "watch-addr"},
		{name: "negative buffer", cfg: Config{Buffer: -1}, want: "watch-buffer -1"},
		{name: "largest buffer", cfg: Config{Buffer: MaxBuffer}},
		{name: "buffer too large", cfg: Config{Buffer: MaxBuffer + 1}, want: "at most 1000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// BenchmarkPublish is what the Hub adds to each event on the relay's side:
// "alone" is its Publish with no watcher, "watched" with one watcher reading
// live; compare both with "baseline", a Sink that only counts.
func BenchmarkPublish(b *testing.B) {
	ev := event.Event{Scope: event.ScopeStream, Reason: event.ReasonRSTStream, ConnectionID: "0A1B2C3D-1", StreamID: 1, ID: "x"}
	b.Run("baseline", func(b *testing.B) {
		var n int
		sink := event.SinkFunc(func(event.Event) { n++ })
		for b.Loop() {
			sink.Publish(ev)
		}
	})
	b.Run("alone", func(b *testing.B) {
		h, err := New(Config{Buffer: DefaultBuffer}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			h.Publish(ev)
		}
	})
	b.Run("watched", func(b *testing.B) {
		h, c, _ := serveHub(b, DefaultBuffer)
		ctx, cancel := context.WithCancel(context.Background())
		s, err := c.Watch(ctx, &notifyv1.WatchRequest{})
		if err != nil {
			b.Fatal(err)
		}
		read := make(chan struct{})
		go func() { // owned here: ends when cancel ends the stream
			defer close(read)
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
			}
		}()
		for b.Loop() {
			h.Publish(ev)
		}
		b.StopTimer()
		cancel()
		<-read
	})
}
