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
	run := func(mutate func(h *PeerResult)) *Results {
		h := PeerResult{Name: Hangup, Saturation: Saturation{PerSecond: 95}, CPUPerMillion: 3, Latency: lat(1050 * time.Microsecond),
			Large: Streaming{BytesPS: 95}, Memory: []Memory{{Conns: 1000, PerConnBytes: 3 << 10, PerStreamByte: 3 << 10}}}
		mutate(&h)
		return &Results{Peers: []PeerResult{
			{Name: Direct, Saturation: Saturation{PerSecond: 120}, Latency: lat(time.Millisecond), Large: Streaming{BytesPS: 150}},
			{Name: TCPRelay, Saturation: Saturation{PerSecond: 100}, CPUPerMillion: 1, Latency: lat(1020 * time.Microsecond), Large: Streaming{BytesPS: 100}},
			h,
			{Name: HAProxy, Saturation: Saturation{PerSecond: 60}, CPUPerMillion: 8},
		}}
	}
	for _, tc := range []struct {
		name       string
		mutate     func(h *PeerResult)
		wantRows   int      // target rows missed
		wantMissed []string // explanations that must say "(missed)"
	}{
		{"all met", func(*PeerResult) {}, 0, nil},
		{"slow unary", func(h *PeerResult) { h.Saturation.PerSecond = 80 }, 1, []string{"Throughput"}},
		{"CPU above haproxy", func(h *PeerResult) { h.CPUPerMillion = 9 }, 1, []string{"Throughput"}},
		{"p99 over budget", func(h *PeerResult) { h.Latency = lat(1500 * time.Microsecond) }, 1, []string{"Added latency"}},
		{"slow streaming", func(h *PeerResult) { h.Large.BytesPS = 80 }, 1, []string{"Streaming"}},
		{"fat idle connection", func(h *PeerResult) { h.Memory[0].PerConnBytes = 7 << 10 }, 2, []string{"Memory"}},
		{"fat open stream", func(h *PeerResult) { h.Memory[0].PerStreamByte = 6 << 10 }, 1, []string{"Memory"}},
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
