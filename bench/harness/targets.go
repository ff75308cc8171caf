//go:build linux

package harness

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/pkg/proxy"
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
	missed := map[string]bool{}
	check := func(group, target, got string, met bool) {
		row(target, got, met)
		missed[group] = missed[group] || !met
	}
	if relay != nil && relay.Saturation.PerSecond > 0 {
		r := h.Saturation.PerSecond / relay.Saturation.PerSecond
		check("throughput", "saturated unary throughput ≥ 0.9× the TCP relay", fmt.Sprintf("%.2f×", r), r >= 0.9)
	}
	if hap != nil && hap.CPUPerMillion > 0 && h.CPUPerMillion > 0 {
		check("throughput", "CPU per request below haproxy's", fmt.Sprintf("%.1f s against %.1f s per 1M calls", h.CPUPerMillion, hap.CPUPerMillion),
			h.CPUPerMillion < hap.CPUPerMillion)
	}
	added := func(p *PeerResult, i int) (time.Duration, bool) {
		if p == nil || direct == nil || i >= len(p.Latency) || i >= len(direct.Latency) {
			return 0, false
		}
		return p.Latency[i].P99 - direct.Latency[i].P99, true
	}
	half := slices.Index(LatencyFractions, 0.5)
	if d, ok := added(h, half); ok {
		check("latency", "added p99 unary latency over direct ≤ 100 µs at 50% load", fmt.Sprintf("%+d µs", d/time.Microsecond), d <= 100*time.Microsecond)
	}
	if relay != nil && relay.Large.BytesPS > 0 {
		r := h.Large.BytesPS / relay.Large.BytesPS
		check("streaming", "1 MiB streaming ≥ 0.9× the TCP relay", fmt.Sprintf("%.2f×", r), r >= 0.9)
	}
	for _, m := range h.Memory {
		check("memory", fmt.Sprintf("≤ 6 KiB RSS per idle connection (%d connections)", m.Conns), fmt.Sprintf("%.1f KiB", m.PerConnBytes/1024), m.PerConnBytes <= 6*1024)
		check("memory", fmt.Sprintf("≤ 8 KiB per idle connection with one open stream (%d connections)", m.Conns),
			fmt.Sprintf("%.1f KiB", (m.PerConnBytes+m.PerStreamByte)/1024), m.PerConnBytes+m.PerStreamByte <= 8*1024)
	}

	w("\nHow the targets are met, and what holds hangup back where one is missed:\n\n")
	if missed["throughput"] && relay != nil {
		w("- **Throughput** (missed). Saturated unary calls are CPU-bound here: h2load, the app and the proxy share 2 cores, so ")
		w("every µs the proxy spends per call is taken from the other two. hangup spends %.1f s per million calls, the splice relay %.1f s: ",
			h.CPUPerMillion, relay.CPUPerMillion)
		w("it moves bytes inside the kernel and parses nothing, while hangup reads every batch into user space, walks its frames, ")
		w("rewrites each request's header block (to add the connection and stream ids; a block repeated from an earlier call is ")
		w("recognised and its encoding reused), keeps a stream table entry per call and runs the keepalive policy per batch. ")
		w("haproxy, which parses and re-frames too, is the comparable peer.\n")
	} else {
		w("- **Throughput** (met). Frames are walked in place and forwarded in batches with one writev; only header blocks are decoded.\n")
	}
	if missed["latency"] {
		w("- **Added latency** (missed). At 50%% load the 2 cores are busy, so the p99 is mostly time spent queued for a CPU, not in the hop")
		if rd, ok := added(relay, half); ok {
			w(": in the same run the splice relay, which does no work per call, adds %+d µs", rd/time.Microsecond)
		}
		w(".")
	} else {
		w("- **Added latency** (met).")
	}
	if relay != nil && direct != nil && h.Unloaded.Count > 0 && direct.Unloaded.Count > 0 && relay.Unloaded.Count > 0 {
		w(" One call at a time, with nothing queued, hangup adds %+d µs at p50 and %+d µs at p99 over direct (the splice relay %+d µs and %+d µs).",
			(h.Unloaded.P50-direct.Unloaded.P50)/time.Microsecond, (h.Unloaded.P99-direct.Unloaded.P99)/time.Microsecond,
			(relay.Unloaded.P50-direct.Unloaded.P50)/time.Microsecond, (relay.Unloaded.P99-direct.Unloaded.P99)/time.Microsecond)
	}
	w("\n")
	if missed["streaming"] {
		w("- **Streaming** (missed). Large DATA frames are relayed through user space; a splice relay never copies them.\n")
	} else {
		w("- **Streaming** (met). DATA payloads are counted, never copied twice or decoded; a partial frame is forwarded as it arrives.\n")
	}
	if missed["memory"] {
		w("- **Memory** (missed). A parked connection holds no goroutine, no stack and no buffer, but still about 4.5 KB of live ")
		w("heap: the connection and its two forwarders (about 1.3 KB), two hpack decoders and an encoder with their tables (about ")
		w("1.4 KB), the keepalive policy and its timer, and the runtime's state for its two sockets. On top of that the Go heap ")
		w("keeps headroom (the collector lets it grow to twice the live data before it runs), which a C proxy does not pay; ")
		w("it weighs less the more connections share it.\n")
	} else {
		w("- **Memory** (met). A socket quiet for %v parks in one epoll poller (internal/park): an idle connection holds no ", proxy.DefaultParkAfter)
		w("goroutine, no stack and no read buffer, only its two sockets, its stream table and its hpack tables.\n")
	}
	return b.String()
}
