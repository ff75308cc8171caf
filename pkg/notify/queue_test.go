package notify

import (
	"runtime"
	"testing"
	"time"
)

// TestQueue checks the block queue against a slice: the same items in the
// same order through pushes and pops that cross block boundaries, with
// at(i) seeing every queued item, and at most one block and one spare kept
// once it is empty.
func TestQueue(t *testing.T) {
	tests := []struct {
		name string
		ops  []int // > 0: push that many; < 0: pop that many
	}{
		{"one item", []int{1, -1}},
		{"exactly one block", []int{queueBlock, -queueBlock}},
		{"a burst across many blocks", []int{10*queueBlock + 3, -(10*queueBlock + 3)}},
		{"interleaved across boundaries", []int{queueBlock - 1, -2, queueBlock + 5, -(queueBlock + 1), 7, -(queueBlock + 8)}},
		{"drained then reused", []int{3 * queueBlock, -(3 * queueBlock), 2, -1, queueBlock, -(queueBlock + 1)}},
		{"pops one at a time", []int{queueBlock + 1, -1, -1, -1, -(queueBlock - 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q queue
			var want []uint64
			seq := uint64(0)
			for _, op := range tt.ops {
				for ; op > 0; op-- {
					seq++
					q.push(item{seq: seq, ev: Event{ID: "e"}})
					want = append(want, seq)
				}
				for ; op < 0; op++ {
					if got := q.pop().seq; got != want[0] {
						t.Fatalf("pop = %d, want %d", got, want[0])
					}
					want = want[1:]
				}
				if q.len() != len(want) {
					t.Fatalf("len = %d, want %d", q.len(), len(want))
				}
				for i, w := range want {
					if got := q.at(i).seq; got != w {
						t.Fatalf("at(%d) = %d, want %d", i, got, w)
					}
				}
			}
			if len(want) != 0 {
				t.Fatalf("test leaves %d items queued", len(want))
			}
			if len(q.blocks) > 1 {
				t.Errorf("an empty queue keeps %d blocks, want at most 1", len(q.blocks))
			}
			for _, b := range append(q.blocks[:len(q.blocks):len(q.blocks)], q.spare) {
				if b == nil {
					continue
				}
				for i := range b {
					if b[i].ev.ID != "" {
						t.Errorf("a kept block still holds event %d", b[i].seq)
					}
				}
			}
		})
	}
}

// sliceQueue is the queue the block queue replaced, kept as the
// benchmark's baseline: a slice grown by append, read from head, slid
// down once head passes half its capacity.
type sliceQueue struct {
	q    []item
	head int
}

func (s *sliceQueue) push(it item) { s.q = append(s.q, it) }

func (s *sliceQueue) pop() item {
	it := s.q[s.head]
	s.q[s.head] = item{}
	s.head++
	switch {
	case s.head == len(s.q):
		s.q, s.head = s.q[:0], 0
	case s.head >= cap(s.q)/2:
		k := copy(s.q, s.q[s.head:])
		clear(s.q[k:])
		s.q, s.head = s.q[:k], 0
	}
	return it
}

// BenchmarkQueueBurst queues a burst of 10,000 events into an empty queue,
// as a notifier does when 100 connections of 100 streams vanish at once,
// then delivers them, and reports the block queue's time and bytes per
// event beside the slice queue's, measured in the same run.
func BenchmarkQueueBurst(b *testing.B) {
	const burst = 10000
	ev := Event{ID: "burst", ConnectionID: "c", Method: "/a.S/M", Authority: "svc", PeerAddress: "192.0.2.1:4000"}
	run := func(push func(item), pop func() item) {
		for i := range burst {
			push(item{ev: ev, seq: uint64(i)})
		}
		for range burst {
			_ = pop()
		}
	}
	measure := func(f func()) (ns, bytes float64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		f()
		ns = float64(time.Since(start).Nanoseconds())
		runtime.ReadMemStats(&m1)
		return ns / burst, float64(m1.TotalAlloc-m0.TotalAlloc) / burst
	}
	var blockNs, blockB, sliceNs, sliceB float64
	for b.Loop() {
		ns, by := measure(func() { var q queue; run(q.push, q.pop) })
		blockNs, blockB = blockNs+ns, blockB+by
		ns, by = measure(func() { var q sliceQueue; run(q.push, q.pop) })
		sliceNs, sliceB = sliceNs+ns, sliceB+by
	}
	n := float64(b.N)
	b.ReportMetric(blockNs/n, "ns/event")
	b.ReportMetric(sliceNs/n, "slice-ns/event")
	b.ReportMetric(blockNs/sliceNs, "ns-ratio")
	b.ReportMetric(blockB/n, "B/event")
	b.ReportMetric(sliceB/n, "slice-B/event")
}
