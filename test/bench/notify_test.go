package bench

import (
	"context"
	"flag"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
)

// baselineBatchDelay is the batch delay every batch waited before issue 15
// (the old default): the baseline the notify benchmarks divide by, measured
// in the same run as the default.
const baselineBatchDelay = 2 * time.Millisecond

// notifyPair is two Notifiers delivering to one real gRPC receiver: base
// with the old fixed batch delay, cur with the default (send at once when
// no call is in flight).
type notifyPair struct {
	recv      *demoapp.Receiver
	base, cur *notify.Notifier
}

func startNotifyPair(b *testing.B) *notifyPair {
	b.Helper()
	p := &notifyPair{recv: demoapp.NewReceiver(1 << 20)}
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(gs, p.recv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	mk := func(delay time.Duration) *notify.Notifier {
		n, err := notify.New(notify.Config{Addr: ln.Addr().String(), QueueSize: 1 << 20, BatchDelay: delay})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	p.base, p.cur = mk(baselineBatchDelay), mk(0)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.base.Close(ctx)
		_ = p.cur.Close(ctx)
		gs.Stop()
	})
	// Warm both connections so that no sample pays for a dial.
	for _, n := range []*notify.Notifier{p.base, p.cur} {
		n.Publish(event.Event{ID: "warm-up"})
		p.receive(b, 1)
	}
	return p
}

// receive waits for k events and returns them.
func (p *notifyPair) receive(b *testing.B, k int) []demoapp.Received {
	b.Helper()
	out := make([]demoapp.Received, 0, k)
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for len(out) < k {
		select {
		case r := <-p.recv.Events:
			out = append(out, r)
		case <-deadline.C:
			b.Fatalf("%d of %d events reached the receiver within 30s", len(out), k)
		}
	}
	return out
}

// notifyGap is the pause between the events of BenchmarkNotifyIsolated:
// -args -notify-gap=1s measures at exactly 1 event/s (slowly: two events a
// second). The default, no pause, gives the same figure much faster, since
// each event is published while the sender is idle either way.
var notifyGap = flag.Duration("notify-gap", 0, "pause between the events of BenchmarkNotifyIsolated (1s: 1 event/s)")

// BenchmarkNotifyIsolated: one event at a time, each published while the
// sender is idle, as at 1 event/s. It reports publish → the app's Notify
// received, p50 and p99, for the old fixed 2ms batch delay and the
// default, interleaved so that both see the same machine, and their ratio.
func BenchmarkNotifyIsolated(b *testing.B) {
	p := startNotifyPair(b)
	var base, cur []time.Duration
	one := func(n *notify.Notifier, i int) time.Duration {
		if *notifyGap > 0 {
			b.StopTimer()
			time.Sleep(*notifyGap) // the rate under test, not a wait for a condition
			b.StartTimer()
		}
		start := time.Now()
		n.Publish(event.Event{ID: "iso-" + strconv.Itoa(i)})
		return p.receive(b, 1)[0].At.Sub(start)
	}
	for i := 0; b.Loop(); i++ {
		base = append(base, one(p.base, i))
		cur = append(cur, one(p.cur, i))
	}
	reportRatio(b, "isolated", base, cur)
}

// BenchmarkNotifyBurst100k: events published at 100,000 a second (100
// every millisecond) for 100 ms, to each Notifier in turn. It reports the
// delivered rate (events / time from the first Publish to the last
// receipt) and the p99 latency of each, and their ratios.
func BenchmarkNotifyBurst100k(b *testing.B) {
	p := startNotifyPair(b)
	const perTick, ticks = 100, 100
	run := func(n *notify.Notifier, round int) (rate float64, lat []time.Duration, allocs uint64) {
		published := make([]time.Time, perTick*ticks)
		m0 := mallocs()
		start := time.Now()
		for tk := range ticks {
			// Pace against the start, so that a late tick catches up.
			if d := time.Until(start.Add(time.Duration(tk) * time.Millisecond)); d > 0 {
				time.Sleep(d)
			}
			for j := range perTick {
				k := tk*perTick + j
				published[k] = time.Now()
				n.Publish(event.Event{ID: fmt.Sprintf("b%d-%d", round, k)})
			}
		}
		got := p.receive(b, len(published))
		allocs = mallocs() - m0
		lat = make([]time.Duration, 0, len(got))
		var last time.Time
		for _, r := range got {
			var rr, k int
			if _, err := fmt.Sscanf(r.Event.ID, "b%d-%d", &rr, &k); err != nil || rr != round {
				b.Fatalf("unexpected event %q in round %d", r.Event.ID, round)
			}
			lat = append(lat, r.At.Sub(published[k]))
			if r.At.After(last) {
				last = r.At
			}
		}
		return float64(len(published)) / last.Sub(start).Seconds(), lat, allocs
	}
	var baseRate, curRate float64
	var baseAllocs, curAllocs uint64
	var base, cur []time.Duration
	round := 0
	for b.Loop() {
		r, l, a := run(p.base, round)
		baseRate += r
		baseAllocs += a
		base = append(base, l...)
		round++
		r, l, a = run(p.cur, round)
		curRate += r
		curAllocs += a
		cur = append(cur, l...)
		round++
	}
	rounds := float64(round / 2)
	b.ReportMetric(baseRate/rounds, "base-events/s")
	b.ReportMetric(curRate/rounds, "events/s")
	b.ReportMetric(curRate/baseRate, "rate-ratio")
	reportAllocs(b, baseAllocs, curAllocs, rounds*perTick*ticks)
	reportRatio(b, "burst", base, cur)
}

// BenchmarkNotifyBurstAtOnce: 10,000 events published at once (as when
// many connections vanish together), to each Notifier in turn; it reports
// how many events per second reach the app, for each, and their ratio. The
// paced benchmark above cannot go beyond its 100k/s; this one shows the
// ceiling.
func BenchmarkNotifyBurstAtOnce(b *testing.B) {
	p := startNotifyPair(b)
	const burst = 10000
	run := func(n *notify.Notifier, round int) (rate float64, allocs uint64) {
		m0 := mallocs()
		start := time.Now()
		for k := range burst {
			n.Publish(event.Event{ID: "a" + strconv.Itoa(round) + "-" + strconv.Itoa(k)})
		}
		got := p.receive(b, burst)
		allocs = mallocs() - m0
		return float64(burst) / got[len(got)-1].At.Sub(start).Seconds(), allocs
	}
	var baseRate, curRate float64
	var baseAllocs, curAllocs uint64
	round := 0
	for b.Loop() {
		r, a := run(p.base, round)
		baseRate += r
		baseAllocs += a
		r, a = run(p.cur, round+1)
		curRate += r
		curAllocs += a
		round += 2
	}
	rounds := float64(round / 2)
	b.ReportMetric(baseRate/rounds, "base-events/s")
	b.ReportMetric(curRate/rounds, "events/s")
	b.ReportMetric(curRate/baseRate, "rate-ratio")
	reportAllocs(b, baseAllocs, curAllocs, rounds*burst)
}

// mallocs is how many heap objects the process has allocated so far.
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// reportAllocs reports the heap objects allocated per event, from Publish
// to the receiver's Events, for the baseline and the current Notifier:
// the whole process, so the receiver's unmarshalling and the benchmark's
// own event ids are in both.
func reportAllocs(b *testing.B, base, cur uint64, events float64) {
	b.Helper()
	b.ReportMetric(float64(base)/events, "base-allocs/event")
	b.ReportMetric(float64(cur)/events, "allocs/event")
}

// reportRatio reports p50 and p99 of the baseline and the current path and
// current/baseline for each (below 1 is faster).
func reportRatio(b *testing.B, name string, base, cur []time.Duration) {
	b.Helper()
	for _, q := range []struct {
		label string
		p     float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		pb, pc := percentile(base, q.p), percentile(cur, q.p)
		b.ReportMetric(float64(pb.Microseconds()), name+"-base-"+q.label+"-µs")
		b.ReportMetric(float64(pc.Microseconds()), name+"-"+q.label+"-µs")
		b.ReportMetric(float64(pc)/float64(pb), name+"-"+q.label+"-ratio")
	}
}
