//go:build linux

package harness

import (
	"strings"
	"testing"
	"time"
)

// TestTargets: each target row says met or not from the figures, and each
// missed group gets its explanation.
func TestTargets(t *testing.T) {
	lat := func(p99 time.Duration) []Latency {
		return []Latency{{P99: p99}, {P99: p99}, {P99: p99}}
	}
	run := func(mutate func(res *Results, h *PeerResult)) *Results {
		h := PeerResult{Name: Hangup, Saturation: Saturation{PerSecond: 96}, CPUPerMillion: 1.2, Latency: lat(1100 * time.Microsecond),
			Large: Streaming{BytesPS: 100}, Memory: []Memory{{Conns: 1000, PerConnBytes: 3 << 10, PerStreamByte: 2 << 10, IdleRSSBytes: 9 << 20}},
			Traced: &Traced{Saturation: Saturation{PerSecond: 92}}}
		res := &Results{SidecarBinaryBytes: 19 << 20, Notify: &NotifyResult{RSTp99: 900 * time.Microsecond, BurstEventsPerS: 120e3}}
		mutate(res, &h)
		res.Peers = []PeerResult{
			{Name: Direct, Saturation: Saturation{PerSecond: 120}, Latency: lat(time.Millisecond), Large: Streaming{BytesPS: 150}},
			{Name: TCPRelay, Saturation: Saturation{PerSecond: 100}, CPUPerMillion: 1, Latency: lat(1020 * time.Microsecond), Large: Streaming{BytesPS: 100}},
			h,
			{Name: HAProxy, Saturation: Saturation{PerSecond: 60}, CPUPerMillion: 8},
		}
		return res
	}
	for _, tc := range []struct {
		name       string
		mutate     func(res *Results, h *PeerResult)
		wantRows   int      // target rows missed
		wantMissed []string // explanations that must say "(missed)"
	}{
		{"all met", func(*Results, *PeerResult) {}, 0, nil},
		{"slow notify", func(res *Results, _ *PeerResult) { res.Notify.RSTp99 = 2 * time.Millisecond }, 1, []string{"Notification"}},
		{"slow burst", func(res *Results, _ *PeerResult) { res.Notify.BurstEventsPerS = 90e3 }, 1, []string{"Bursts"}},
		{"slow unary", func(_ *Results, h *PeerResult) { h.Saturation.PerSecond = 90; h.Traced.Saturation.PerSecond = 88 }, 1, []string{"Throughput"}},
		{"CPU over the relay's budget", func(_ *Results, h *PeerResult) { h.CPUPerMillion = 1.3 }, 1, []string{"Throughput"}},
		{"CPU above haproxy", func(_ *Results, h *PeerResult) { h.CPUPerMillion = 9 }, 2, []string{"Throughput"}},
		{"p99 over the relay's + 100 µs", func(_ *Results, h *PeerResult) { h.Latency = lat(1200 * time.Microsecond) }, 1, []string{"Added latency"}},
		{"tracing too dear", func(_ *Results, h *PeerResult) { h.Traced.Saturation.PerSecond = 90 }, 1, []string{"Tracing"}},
		{"fat idle process", func(_ *Results, h *PeerResult) { h.Memory[0].IdleRSSBytes = 11 << 20 }, 1, []string{"Footprint"}},
		{"fat binary", func(res *Results, _ *PeerResult) { res.SidecarBinaryBytes = 21 << 20 }, 1, []string{"Footprint"}},
		{"slow streaming", func(_ *Results, h *PeerResult) { h.Large.BytesPS = 98 }, 1, []string{"Streaming"}},
		{"fat idle connection", func(_ *Results, h *PeerResult) { h.Memory[0].PerConnBytes = 5 << 10 }, 1, []string{"Memory"}},
		{"fat open stream", func(_ *Results, h *PeerResult) { h.Memory[0].PerStreamByte = 3 << 10 }, 1, []string{"Memory"}},
		// The interleaved rounds' medians, when there are any, decide the
		// ratios to the relay and to the untraced run, whatever the peers'
		// own runs gave.
		{"rounds met where the own runs missed", func(res *Results, h *PeerResult) {
			h.Saturation.PerSecond, h.CPUPerMillion, h.Large.BytesPS, h.Traced.Saturation.PerSecond = 80, 2, 50, 40
			res.Paired = pairedOf(PairedRound{Relay: side(100, 1, 100), Hangup: side(96, 1.2, 100), Traced: side(92, 0, 0)})
		}, 0, nil},
		{"rounds missed where the own runs met", func(res *Results, _ *PeerResult) {
			res.Paired = pairedOf(
				PairedRound{Relay: side(100, 1, 100), Hangup: side(90, 1.3, 90), Traced: side(80, 0, 0)},
				PairedRound{Relay: side(100, 1, 100), Hangup: side(99, 1.2, 101), Traced: side(95, 0, 0)},
				PairedRound{Relay: side(100, 1, 100), Hangup: side(91, 1.4, 95), Traced: side(86, 0, 0)})
		}, 4, []string{"Throughput", "Tracing", "Streaming"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := Targets(run(tc.mutate))
			if got, want := strings.Count(out, "**no**"), tc.wantRows; got != want {
				t.Errorf("%d targets missed, want %d:\n%s", got, want, out)
			}
			for _, group := range tc.wantMissed {
				if !strings.Contains(out, "**"+group+"** (missed)") {
					t.Errorf("no explanation for %s:\n%s", group, out)
				}
			}
			if strings.Count(out, "(missed)") != len(tc.wantMissed) {
				t.Errorf("explanations of misses: %d, want %d:\n%s", strings.Count(out, "(missed)"), len(tc.wantMissed), out)
			}
		})
	}
}

func side(calls, cpu, stream float64) PairedSide {
	return PairedSide{CallsPerS: calls, CPUPerMillion: cpu, StreamBytesPS: stream}
}

func pairedOf(rounds ...PairedRound) *Paired { return &Paired{Rounds: rounds, Seconds: 4} }

// TestPairedMedian: the median of a ratio over the rounds that have it,
// with its range.
func TestPairedMedian(t *testing.T) {
	r := func(hangup, relay float64) PairedRound {
		return PairedRound{Relay: side(relay, 0, 0), Hangup: side(hangup, 0, 0)}
	}
	tests := []struct {
		name        string
		p           *Paired
		med, lo, hi float64
		ok          bool
	}{
		{"no rounds", nil, 0, 0, 0, false},
		{"one", pairedOf(r(90, 100)), 0.9, 0.9, 0.9, true},
		{"odd count", pairedOf(r(120, 100), r(90, 100), r(100, 100)), 1.0, 0.9, 1.2, true},
		{"even count", pairedOf(r(90, 100), r(120, 100)), 1.05, 0.9, 1.2, true},
		{"a round without the figure", pairedOf(r(90, 100), r(0, 100), r(110, 0)), 0.9, 0.9, 0.9, true},
		{"no round with the figure", pairedOf(r(0, 100)), 0, 0, 0, false},
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			med, lo, hi, ok := tt.p.Median(throughputRatio)
			if ok != tt.ok || !near(med, tt.med) || !near(lo, tt.lo) || !near(hi, tt.hi) {
				t.Errorf("Median = %v, %v–%v, %v; want %v, %v–%v, %v", med, lo, hi, ok, tt.med, tt.lo, tt.hi, tt.ok)
			}
			want := tt.med
			if !tt.ok {
				want = -1
			}
			if got := tt.p.MedianOr(throughputRatio, -1); !near(got, want) {
				t.Errorf("MedianOr(…, -1) = %v, want %v", got, want)
			}
		})
	}
}

// TestPairedTable: each round's ratios and their medians, and why the
// rounds stopped short.
func TestPairedTable(t *testing.T) {
	res := &Results{Paired: pairedOf(
		PairedRound{Relay: side(50000, 3.5, 600<<20), Hangup: side(55000, 4.2, 660<<20), Traced: side(44000, 12, 0)},
		PairedRound{Relay: side(50000, 3.5, 600<<20), Hangup: side(45000, 4.9, 540<<20), Traced: side(40500, 13, 0)}),
		PairedErr: "round 3, tcprelay, saturated unary: h2load: exit status 1"}
	out := Tables(res)
	for _, want := range []string{
		"| 1 | 50000 | 55000 | 1.10× | 3.5 | 4.2 | 1.20× | 44000 | 0.80× | 600 | 660 | 1.10× |",
		"| 2 | 50000 | 45000 | 0.90× | 3.5 | 4.9 | 1.40× | 40500 | 0.90× | 600 | 540 | 0.90× |",
		"| median | | | **1.00×** | | | **1.30×** | | **0.85×** | | | **1.00×** |",
		"Stopped short: round 3, tcprelay",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

// TestMemoryTableIgnoresPageNoise: a peer that keeps nothing per stream but
// grew by a few pages is shown as 0.0 and is not the reference the others
// are compared to.
func TestMemoryTableIgnoresPageNoise(t *testing.T) {
	res := &Results{Options: Options{Conns: []int{1000}}, Peers: []PeerResult{
		{Name: Direct},
		{Name: TCPRelay, Memory: []Memory{{Conns: 1000, PerConnBytes: 16 << 10, PerStreamByte: 16}}},
		{Name: Hangup, Memory: []Memory{{Conns: 1000, PerConnBytes: 8 << 10, PerStreamByte: 4 << 10}}},
		{Name: HAProxy, Memory: []Memory{{Conns: 1000, PerConnBytes: 6 << 10, PerStreamByte: 8 << 10}}},
	}}
	out := Tables(res)
	for _, want := range []string{
		"| tcprelay | 16.0 | 2.67× | 0.0 | – |",
		"| hangup | 8.0 | 1.33× | 4.0 | 1.00× |",
		"| haproxy | 6.0 | 1.00× | 8.0 | 2.00× |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no row %q in:\n%s", want, out)
		}
	}
}

// TestFootprintTable: each proxy's idle RSS and threads, with its ratio to
// the least, and the sidecar binary's size.
func TestFootprintTable(t *testing.T) {
	res := &Results{SidecarBinaryBytes: 19_670_000, Peers: []PeerResult{
		{Name: Direct},
		{Name: Hangup, Memory: []Memory{{Conns: 1000, IdleRSSBytes: 9 << 20, IdleAnonBytes: 3 << 20, IdleThreads: 7}}},
		{Name: Nginx, Memory: []Memory{{Conns: 1000, IdleRSSBytes: 6 << 20, IdleAnonBytes: 5 << 19, IdleThreads: 3}}},
		{Name: HAProxy},
	}}
	out := Tables(res)
	for _, want := range []string{"18.8 MiB", "| hangup | 9.0 | 1.50× | 3.0 | 7 |", "| nginx | 6.0 | 1.00× | 2.5 | 3 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	_, section, _ := strings.Cut(out, "### Idle footprint")
	if section == "" || strings.Contains(section, "| haproxy |") {
		t.Errorf("want a footprint section without haproxy, which has no memory figures:\n%s", out)
	}
}

// TestMemoryTableNamesUnsettled: a step whose RSS was still moving at the
// end of the bounded wait is named under the table, with its peer.
func TestMemoryTableNamesUnsettled(t *testing.T) {
	res := &Results{Options: Options{Conns: []int{1000}}, Peers: []PeerResult{
		{Name: Direct},
		{Name: Hangup, Memory: []Memory{{Conns: 1000, PerConnBytes: 4 << 10, PerStreamByte: 2 << 10}}},
		{Name: TCPRelay, Memory: []Memory{{Conns: 1000, PerConnBytes: 16 << 10, Unsettled: []string{MemoryStepConns, MemoryStepStreams}}}},
	}}
	out := Tables(res)
	if want := "read as they were: tcprelay (connections, streams)."; !strings.Contains(out, want) {
		t.Errorf("no %q in:\n%s", want, out)
	}
	res.Peers[2].Memory[0].Unsettled = nil
	if out := Tables(res); strings.Contains(out, "read as they were") {
		t.Errorf("an unsettled note with every step settled:\n%s", out)
	}
}
