package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// The replay buffer is bounded by a count of events, not by age: how long
// a watcher is away matters only through how many events happen meanwhile.
// The tests below therefore make their outages out of events, not of
// wall-clock time, and wait for conditions (events arrived at the push
// receiver), never for a duration.

// TestWatchResumesAfterAnOutage: an app reading events with Watch leaves,
// 40 clients disconnect while it is away, and it comes back with the
// incarnation and sequence of the last event it handled: it gets exactly
// the 40 it missed, in order, none reported missing, with the same event
// ids the push receiver got (push and pull on together).
func TestWatchResumesAfterAnOutage(t *testing.T) {
	_, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	watchAddr := testtools.FreeAddr(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--watch-addr", watchAddr, "--watch-buffer", "64")

	w := startWatch(t, watchAddr, "", 0)
	hello := w.next(t)
	if hello.GetSequence() != 1 || hello.GetEvent().GetScope() != notifyv1.Scope_SCOPE_SIDECAR || hello.GetEvent().GetIncarnation() == "" {
		t.Fatalf("first Watch response %v, want sequence 1: the SCOPE_SIDECAR event naming the incarnation", hello)
	}
	inc := hello.GetEvent().GetIncarnation()
	pushed := disconnect(t, sc.Addr, recv, 5)
	last := hello
	for i := range 5 {
		last = w.next(t)
		if last.GetSequence() != uint64(i+2) || last.GetEvent().GetEventId() != pushed[i] {
			t.Fatalf("live event %d: sequence %d id %s, want %d and the pushed %s", i, last.GetSequence(), last.GetEvent().GetEventId(), i+2, pushed[i])
		}
	}
	w.stop()

	missed := disconnect(t, sc.Addr, recv, 40) // the app is away

	w = startWatch(t, watchAddr, inc, last.GetSequence())
	for i, id := range missed {
		r := w.next(t)
		if r.GetSequence() != last.GetSequence()+uint64(i)+1 || r.GetMissedBefore() != 0 || r.GetEvent().GetEventId() != id {
			t.Fatalf("resumed event %d: sequence %d missed_before %d id %s; want %d, 0, %s",
				i, r.GetSequence(), r.GetMissedBefore(), r.GetEvent().GetEventId(), last.GetSequence()+uint64(i)+1, id)
		}
		if ev := r.GetEvent(); ev.GetScope() != notifyv1.Scope_SCOPE_STREAM || ev.GetReason() != notifyv1.Reason_REASON_RST_STREAM ||
			ev.GetIncarnation() != inc || ev.GetConnectionId() == "" {
			t.Fatalf("resumed event %d = %v, want the RST_STREAM of a stream of incarnation %s", i, ev, inc)
		}
	}
	t.Logf("resumed after %d events away: 0 lost, 0 duplicated", len(missed))
}

// TestWatchReportsAGap: with a buffer of 8, a watcher away for 20 events
// cannot get them all; the first event it gets says exactly how many it
// missed, and every sequence is either received or counted.
func TestWatchReportsAGap(t *testing.T) {
	_, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	watchAddr := testtools.FreeAddr(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--watch-addr", watchAddr, "--watch-buffer", "8")

	w := startWatch(t, watchAddr, "", 0)
	hello := w.next(t)
	w.stop()
	pushed := disconnect(t, sc.Addr, recv, 20) // sequences 2 to 21; the buffer keeps 14 to 21

	w = startWatch(t, watchAddr, hello.GetEvent().GetIncarnation(), hello.GetSequence())
	first := w.next(t)
	if first.GetSequence() != 14 || first.GetMissedBefore() != 12 {
		t.Fatalf("first event after the gap: sequence %d missed_before %d, want 14 and 12 (sequences 2 to 13 are gone)", first.GetSequence(), first.GetMissedBefore())
	}
	if first.GetEvent().GetEventId() != pushed[12] {
		t.Fatalf("sequence 14 is event %s, want the 13th pushed, %s", first.GetEvent().GetEventId(), pushed[12])
	}
	for seq := uint64(15); seq <= 21; seq++ {
		if r := w.next(t); r.GetSequence() != seq || r.GetMissedBefore() != 0 || r.GetEvent().GetEventId() != pushed[seq-2] {
			t.Fatalf("event: sequence %d missed_before %d id %s, want %d, 0, %s", r.GetSequence(), r.GetMissedBefore(), r.GetEvent().GetEventId(), seq, pushed[seq-2])
		}
	}
	// The sidecar's /metrics counts the gap too: one response, 12 events;
	// 1 + 8 events sent.
	m := testtools.ScrapeMetrics(t, "http://"+sc.AdminAddr+"/metrics")
	for name, want := range map[string]float64{"hangup_watch_gaps_total": 1, "hangup_watch_missed_total": 12,
		"hangup_watch_sent_total": 9} {
		if m[name] != want {
			t.Errorf("/metrics %s = %v, want %v", name, m[name], want)
		}
	}
}

// TestOldReceiverWithWatchOn: a DisconnectNotify receiver generated from
// the first contract (test/e2e/oldreceiver) keeps receiving every event
// from the current sidecar, with pull mode on beside it: each change to
// the contract was additive.
func TestOldReceiverWithWatchOn(t *testing.T) {
	_, appAddr := startApp(t)
	old := startOldReceiver(t)
	watchAddr := testtools.FreeAddr(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", old.addr, "--watch-addr", watchAddr)
	w := startWatch(t, watchAddr, "", 0)
	w.next(t) // the SCOPE_SIDECAR event

	const n = 3
	for range n {
		c := openRawStream(t, sc.Addr)
		if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	watched := map[string]bool{}
	for range n {
		watched[w.next(t).GetEvent().GetEventId()] = true
	}
	got := 0
	for got < n {
		line := testtools.Receive(t, old.lines, 1, 10*time.Second)[0]
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "event" {
			t.Fatalf("old receiver wrote %q, want \"event ID SCOPE REASON CONN STREAM\"", line)
		}
		if f[2] == "3" { // SCOPE_SIDECAR, a number to a receiver that predates it
			continue
		}
		if f[2] != "SCOPE_STREAM" || f[3] != "REASON_RST_STREAM" || f[4] == `""` || f[5] != "1" {
			t.Fatalf("old receiver got %q, want a SCOPE_STREAM REASON_RST_STREAM event of stream 1", line)
		}
		if !watched[f[1]] {
			t.Fatalf("old receiver got event %s, which the watcher did not: push and pull must carry the same events", f[1])
		}
		got++
	}
}

// watcher is a grpc-go Watch client reading into a channel.
type watcher struct {
	resps  chan *notifyv1.WatchResponse
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startWatch opens a Watch stream at addr resuming after (inc, after). It
// is stopped when the test ends, if not before.
func startWatch(t *testing.T, addr, inc string, after uint64) *watcher {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	stream, err := notifyv1.NewDisconnectWatchClient(cc).Watch(ctx, &notifyv1.WatchRequest{Incarnation: inc, AfterSequence: after})
	if err != nil {
		cancel()
		_ = cc.Close()
		t.Fatalf("Watch(%q, %d) at %s: %v", inc, after, addr, err)
	}
	w := &watcher{resps: make(chan *notifyv1.WatchResponse, 1000), cancel: cancel, done: make(chan struct{})}
	go func() { // owned by w.stop
		defer close(w.done)
		defer func() { _ = cc.Close() }()
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case w.resps <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// next returns the next response, failing after 10s.
func (w *watcher) next(t *testing.T) *notifyv1.WatchResponse {
	t.Helper()
	return testtools.Receive(t, w.resps, 1, 10*time.Second)[0]
}

// stop ends the stream, as an app that goes away does, and waits for the
// reader.
func (w *watcher) stop() {
	w.once.Do(func() {
		w.cancel()
		<-w.done
	})
}

// disconnect opens n streams through the sidecar at addr one after the
// other and resets each, and returns the event ids the push receiver got
// for them, in order. Each is in the Watch buffer by then, with the next
// sequence: the sidecar buffers an event before it hands it to push.
func disconnect(t *testing.T, addr string, recv *demoapp.Receiver, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for range n {
		c := openRawStream(t, addr)
		if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		ev := receive(t, recv, 1, 10*time.Second)[0].Event
		if ev.Reason != event.ReasonRSTStream {
			t.Fatalf("push receiver got %+v, want the RST_STREAM just sent", ev)
		}
		ids = append(ids, ev.ID)
		_ = c.Close() // a connection without open streams: no further event
	}
	return ids
}

// oldReceiver is test/e2e/oldreceiver running in its own process.
type oldReceiver struct {
	addr  string
	lines chan string // the lines it writes after "listening"
}

// startOldReceiver builds and starts test/e2e/oldreceiver on a free
// loopback port; it is killed and waited for when the test ends.
func startOldReceiver(t *testing.T) *oldReceiver {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "oldreceiver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/e2e/oldreceiver")
	build.Dir = testtools.ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/e2e/oldreceiver: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	r := &oldReceiver{}
	all := make(chan string, 1000)
	done := make(chan struct{})
	go func() { // owned by the cleanup below, which waits for done
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case all <- sc.Text():
			default: // the test reads far fewer; never block the receiver
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	first := testtools.Receive(t, all, 1, 10*time.Second)[0]
	addr, ok := strings.CutPrefix(first, "listening ")
	if !ok {
		t.Fatalf("oldreceiver's first line %q, want \"listening ADDR\"", first)
	}
	r.addr, r.lines = addr, all
	return r
}
