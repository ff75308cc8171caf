package harness

import (
	"fmt"
	"strings"
	"time"
)

// Targets renders issue #7's targets for hangup against this run's figures:
// met or not, by how much, and, where missed, what holds hangup back.
func Targets(res *Results) string {
	h, relay, hap, direct := res.peer(Hangup), res.peer(TCPRelay), res.peer(HAProxy), res.peer(Direct)
	if h == nil {
		return ""
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("\n## Targets\n\n| target | this run | met |\n|---|---|---|\n")
	row := func(target, got string, met bool) {
		mark := "yes"
		if !met {
			mark = "**no**"
		}
		w("| %s | %s | %s |\n", target, got, mark)
	}
	if relay != nil && relay.Saturation.PerSecond > 0 {
		r := h.Saturation.PerSecond / relay.Saturation.PerSecond
		row("saturated unary throughput ≥ 0.9× the TCP relay", fmt.Sprintf("%.2f×", r), r >= 0.9)
	}
	if hap != nil && hap.CPUPerMillion > 0 && h.CPUPerMillion > 0 {
		row("CPU per request below haproxy's", fmt.Sprintf("%.1f s against %.1f s per 1M calls", h.CPUPerMillion, hap.CPUPerMillion),
			h.CPUPerMillion < hap.CPUPerMillion)
	}
	for i, f := range LatencyFractions {
		if f != 0.5 || direct == nil || i >= len(h.Latency) || i >= len(direct.Latency) {
			continue
		}
		added := h.Latency[i].P99 - direct.Latency[i].P99
		row("added p99 unary latency over direct ≤ 100 µs at 50% load", fmt.Sprintf("%+d µs", added/time.Microsecond), added <= 100*time.Microsecond)
	}
	if relay != nil && relay.Large.BytesPS > 0 {
		r := h.Large.BytesPS / relay.Large.BytesPS
		row("1 MiB streaming ≥ 0.9× the TCP relay", fmt.Sprintf("%.2f×", r), r >= 0.9)
	}
	for _, m := range h.Memory {
		row(fmt.Sprintf("≤ 6 KiB RSS per idle connection (%d connections)", m.Conns), fmt.Sprintf("%.1f KiB", m.PerConnBytes/1024), m.PerConnBytes <= 6*1024)
		row(fmt.Sprintf("≤ 8 KiB per idle connection with one open stream (%d connections)", m.Conns),
			fmt.Sprintf("%.1f KiB", (m.PerConnBytes+m.PerStreamByte)/1024), m.PerConnBytes+m.PerStreamByte <= 8*1024)
	}
	w("\nWhat holds hangup back where a target is missed:\n\n")
	w("- **Throughput and added latency.** Every batch takes the connection's lock, stamps the clock for the keepalive policy, and ")
	w("(for HEADERS) decodes and re-encodes the header block with a relay-owned hpack encoder. On 2 cores shared with h2load and the ")
	w("app, each extra µs of CPU per request shows up directly. A splice relay does none of this work, and haproxy parses and ")
	w("re-frames everything. Next step: profile the unary path (`go test -cpuprofile` on BenchmarkUnaryThroughput); the header ")
	w("re-encoding and the per-stream allocations (stream struct, header map, span) are the likely first wins.\n")
	w("- **Memory per idle connection.** Each connection runs two goroutines (one per direction), keeps two hpack dynamic tables ")
	w("(the client's, decoded, and the relay's own toward the app, up to 4 KiB each once headers are indexed), and keeps the ")
	w("capacity of its per-batch slices. It holds no read buffer while idle: it waits for readability first. Next steps: one ")
	w("goroutine per connection driven by readiness for both sockets, and releasing the per-batch slices when a connection goes idle.\n")
	return b.String()
}
