//go:build linux

package harness

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart file names, written next to BENCHMARKS.md.
const (
	chartLatency    = "bench-latency.png"
	chartThroughput = "bench-throughput.png"
	chartStreaming  = "bench-streaming.png"
	chartMemory     = "bench-memory.png"
)

// ratio formats v/ref as "1.23×", or "–" when it means nothing.
func ratio(v, ref float64) string {
	if ref <= 0 || v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

// cpuPerGiB formats a CPU-per-GiB figure; a dash where none was measured.
func cpuPerGiB(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// best returns the largest (or, with low, the smallest positive) value of
// f over the proxies: every peer but direct.
func best(res *Results, low bool, f func(PeerResult) float64) float64 {
	b := 0.0
	for _, p := range res.Peers {
		if p.Name == Direct {
			continue
		}
		v := f(p)
		if v <= 0 {
			continue
		}
		if b == 0 || (low && v < b) || (!low && v > b) {
			b = v
		}
	}
	return b
}

// memNoise is the smallest growth per connection that the memory tables
// count: RSS moves by whole pages, so a peer that keeps nothing per stream
// can still grow by a few pages over a thousand streams.
const memNoise = 64

// aboveNoise returns b bytes per connection, or 0 below memNoise.
func aboveNoise(b float64) float64 {
	if b < memNoise {
		return 0
	}
	return b
}

func (r *Results) peer(name string) *PeerResult {
	for i := range r.Peers {
		if r.Peers[i].Name == name {
			return &r.Peers[i]
		}
	}
	return nil
}

func us(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// Tables renders the results as Markdown tables: each figure with its ratio
// to direct (latency) or to the best proxy (throughput, CPU, memory).
func Tables(res *Results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	direct := res.peer(Direct)

	w("### Unary calls, saturated (h2load, %d connections × %d streams)\n\n", res.Options.H2loadConns, res.Options.H2loadStreams)
	w("Ratios: to direct, and to the best proxy (every peer but direct; tcprelay included). ")
	w("CPU is the proxy's own processes (utime+stime from /proc), per million calls.\n\n")
	w("| peer | calls/s | × direct | × best proxy | failed | CPU s / 1M calls | × best proxy |\n|---|---:|---:|---:|---:|---:|---:|\n")
	bestRate := best(res, false, func(p PeerResult) float64 { return p.Saturation.PerSecond })
	bestCPU := best(res, true, func(p PeerResult) float64 { return p.CPUPerMillion })
	for _, p := range res.Peers {
		cpu, cpuRatio := "–", "–"
		if p.Name != Direct && p.CPUPerMillion > 0 {
			cpu, cpuRatio = fmt.Sprintf("%.1f", p.CPUPerMillion), ratio(p.CPUPerMillion, bestCPU)
		}
		w("| %s | %.0f | %s | %s | %d | %s | %s |\n", p.Name, p.Saturation.PerSecond,
			ratio(p.Saturation.PerSecond, direct.Saturation.PerSecond), ratio(p.Saturation.PerSecond, bestRate),
			p.Saturation.Failed, cpu, cpuRatio)
	}

	w("\n### Unary latency, one call at a time (h2load, 1 connection × 1 stream, %d calls/s, every call)\n\n", UnloadedRPS)
	w("What the hop itself adds: each call finds the machine idle, so nothing queues. Ratios to direct.\n\n")
	latencyTable(w, res, direct, func(p PeerResult) (Latency, bool) { return p.Unloaded, p.Unloaded.Count > 0 })

	for i, f := range LatencyFractions {
		w("\n### Unary latency at %.0f%% of direct's saturated rate (h2load --rps, every call)\n\n", f*100)
		if i == 0 {
			w("Same connections and streams as the saturated run; ratios to direct. Where *achieved* is well below the target, ")
			w("the peer could not carry that rate and its latency is mostly queueing.\n\n")
		}
		latencyTable(w, res, direct, func(p PeerResult) (Latency, bool) {
			if i < len(p.Latency) {
				return p.Latency[i], true
			}
			return Latency{}, false
		})
	}

	w("\n### Streaming on one long bidi stream\n\n")
	w("The proxy's CPU per GiB is its own user and system time over the 1 MiB run, divided by what the client received: ")
	w("on shared cores the client and the app compete with the proxy for the same cores, so the rate alone can hide what the relay spends.\n\n")
	w("| peer | 1 MiB messages, MiB/s | × direct | × best proxy | proxy CPU s per GiB | × best proxy | 10 B messages, msg/s | × direct | × best proxy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	bestBytes := best(res, false, func(p PeerResult) float64 { return p.Large.BytesPS })
	bestStreamCPU := best(res, true, func(p PeerResult) float64 { return p.Large.CPUPerGiB })
	bestMsgs := best(res, false, func(p PeerResult) float64 { return p.Small.MsgPerSec })
	for _, p := range res.Peers {
		w("| %s | %.0f | %s | %s | %s | %s | %.0f | %s | %s |\n", p.Name,
			p.Large.BytesPS/(1<<20), ratio(p.Large.BytesPS, direct.Large.BytesPS), ratio(p.Large.BytesPS, bestBytes),
			cpuPerGiB(p.Large.CPUPerGiB), ratio(p.Large.CPUPerGiB, bestStreamCPU),
			p.Small.MsgPerSec, ratio(p.Small.MsgPerSec, direct.Small.MsgPerSec), ratio(p.Small.MsgPerSec, bestMsgs))
	}

	for i, n := range res.Options.Conns {
		w("\n### Memory at %d idle connections (growth of the proxy's RSS)\n\n", n)
		w("Measured in a fresh process of each peer, so that memory freed by the load runs cannot absorb the growth. ")
		w("Each connection has finished its SETTINGS exchange; then one FullDuplexCall stream is opened on each and answered once. ")
		w("Every RSS is read once it has settled, by the same rule for every peer: read every %v until it has stayed within %.1f%% (at least %d KiB) for %v, at most %v. ",
			settleEvery, 100.0/settleFraction, settleTolerance>>10, settleWindow, settleMax)
		w("A Go process (hangup, tcprelay) returns garbage and free pages some time after the work that made them, where a C proxy frees into malloc at once; ")
		w("the settling waits for that. ")
		w("Ratios to the proxy that needs least (a growth of 0.0 is left out of the ratios). ")
		w("nginx allocates its `worker_connections` connection structures at start (the harness sizes them for the largest count), ")
		w("so its idle connections cost little beyond that; tcprelay holds six descriptors per connection (two sockets, a splice pipe per direction).\n\n")
		if i < len(res.ConnsAsked) && res.ConnsAsked[i] != n {
			w("%d connections were asked for, but this process holds two descriptors per connection (the client's and the app's ends) ", res.ConnsAsked[i])
			w("and a proxy two (its sockets): %d is the most that fits the open files limit of %d, which cannot be raised here ", n, res.FDLimit)
			w("(that needs root with CAP_SYS_RESOURCE, or a higher `ulimit -Hn`).\n\n")
		}
		w("| peer | KiB per idle connection | × best | KiB per idle open stream | × best |\n|---|---:|---:|---:|---:|\n")
		get := func(p PeerResult) *Memory {
			if i < len(p.Memory) && p.Memory[i].Conns == n {
				return &p.Memory[i]
			}
			return nil
		}
		bc := best(res, true, func(p PeerResult) float64 {
			if m := get(p); m != nil {
				return aboveNoise(m.PerConnBytes)
			}
			return 0
		})
		bs := best(res, true, func(p PeerResult) float64 {
			if m := get(p); m != nil {
				return aboveNoise(m.PerStreamByte)
			}
			return 0
		})
		var unsettled []string
		for _, p := range res.Peers {
			if p.Name == Direct {
				continue
			}
			m := get(p)
			if m == nil {
				w("| %s | – | – | – | – |\n", p.Name)
				continue
			}
			c, st := aboveNoise(m.PerConnBytes), aboveNoise(m.PerStreamByte)
			w("| %s | %.1f | %s | %.1f | %s |\n", p.Name, c/1024, ratio(c, bc), st/1024, ratio(st, bs))
			if len(m.Unsettled) > 0 {
				unsettled = append(unsettled, fmt.Sprintf("%s (%s)", p.Name, strings.Join(m.Unsettled, ", ")))
			}
		}
		if len(unsettled) > 0 {
			w("\nStill moving after %v, read as they were: %s.\n", settleMax, strings.Join(unsettled, "; "))
		}
	}

	footprintTable(w, res)
	if h := res.peer(Hangup); h != nil && h.Traced != nil {
		t := h.Traced
		w("\n### hangup with tracing always on (saturated unary, as above)\n\n")
		w("Every stream is a span (`OTEL_TRACES_SAMPLER=always_on`), exported over OTLP/gRPC to a receiver in the harness that counts them in the request's bytes, without decoding, and drops them ")
		w("(on the same cores as the sidecar, the app and h2load); a fresh sidecar process, run after the untraced one. Ratios to the untraced run. ")
		w("Spans dropped is the sidecar's own count (`hangup_telemetry_spans_dropped_total`, every place a span can be lost); ")
		w("spans exported is what had reached the receiver when the load stopped, the last batch not yet sent.\n\n")
		w("| hangup | calls/s | × untraced | CPU s / 1M calls | × untraced | spans exported | spans dropped |\n|---|---:|---:|---:|---:|---:|---:|\n")
		w("| tracing off | %.0f | 1.00× | %.1f | 1.00× | – | – |\n", h.Saturation.PerSecond, h.CPUPerMillion)
		dropped := "?"
		if t.Dropped >= 0 {
			dropped = fmt.Sprint(t.Dropped)
		}
		w("| tracing always on | %.0f | %s | %.1f | %s | %d | %s |\n", t.Saturation.PerSecond, ratio(t.Saturation.PerSecond, h.Saturation.PerSecond),
			t.CPUPerMillion, ratio(t.CPUPerMillion, h.CPUPerMillion), t.Spans, dropped)
	}

	pairedTable(w, res)

	if nr := res.Notify; nr != nil {
		w("\n### hangup: disconnect → DisconnectNotify received by the app\n\n")
		w("From the disconnect (the RST_STREAM written, the kill(2) call) to the app's receipt, and the part of it after the sidecar detected the disconnect (the event's `detected_at`, on the same clock): ")
		w("the rest is the disconnect reaching the sidecar.\n\n")
		w("| disconnect | samples | p50 | p99 | after detection p50 | p99 |\n|---|---:|---:|---:|---:|---:|\n")
		w("| client sends RST_STREAM(CANCEL) | %d | %s | %s | %s | %s |\n", nr.RSTSamples, ms(nr.RSTp50), ms(nr.RSTp99), ms(nr.RSTDeliveryP50), ms(nr.RSTDeliveryP99))
		w("| client process SIGKILLed (kernel closes its socket) | %d | %s | %s | %s | %s |\n", nr.KillSamples, ms(nr.KillP50), ms(nr.KillP99),
			ms(nr.KillDeliveryP50), ms(nr.KillDeliveryP99))
		w("\nBurst: %d open streams on %d connections, all connections reset at once: every stream event reached the app in %.2f s, **%.0f events/s**.\n",
			nr.Burst, nr.BurstConns, nr.BurstSeconds, nr.BurstEventsPerS)
	} else if res.NotifyErr != "" {
		w("\n### hangup: disconnect → DisconnectNotify\n\nFailed: %s\n", res.NotifyErr)
	}

	var errs []string
	for _, p := range res.Peers {
		for _, e := range p.Errors {
			errs = append(errs, fmt.Sprintf("- %s: %s", p.Name, strings.ReplaceAll(e, "\n", " ")))
		}
	}
	if len(errs) > 0 {
		w("\n### Scenarios that failed\n\n%s\n", strings.Join(errs, "\n"))
	}
	return b.String()
}

// WriteReport writes dir/BENCHMARKS.md and its PNG charts.
func WriteReport(res *Results, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := writeCharts(res, dir); err != nil {
		return err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks: hangup against real HTTP/2 proxies\n\n")
	w("Generated by `make bench-compare` (bench/compare). Every peer runs in front of the same grpc-go app ")
	w("(grpc.testing.TestService from internal/demoapp) on 127.0.0.1, h2c on both sides, one after the other in one run:\n\n")
	w("- **direct**: no proxy, the reference for latency;\n")
	w("- **tcprelay** (bench/tcprelay): `io.Copy` between two `*net.TCPConn`, which splices on Linux: the physical limit of a byte-forwarding proxy;\n")
	w("- **hangup**: the pod's sidecar binary (`sidecar proxy`, built `-tags hangup_pod` as the `hangup` image is), with a DisconnectNotify receiver; ")
	w("once more with tracing always on;\n")
	w("- **haproxy**: `mode http`, `bind … proto h2`, `server … proto h2`;\n")
	w("- **nginx**: `grpc_pass` to an upstream with keepalive, `keepalive_requests` raised, `worker_processes auto`;\n")
	w("- **nghttpx**: `--frontend=…;no-tls --backend=…;;proto=h2 --workers=2`.\n\n")
	w("The load generators (h2load for saturation and, with `--rps` and its per-request log, at fixed rates; a Go client for streams and idle connections) ")
	w("and the app run on the same machine, so on a small machine they compete with the proxy for the CPUs: ")
	w("compare ratios within one run, not absolute figures across machines.\n\n")
	if res.Options.Short {
		w("**These figures come from the short mode** (%s per scenario, few samples), meant to show the harness works; ", res.Options.Duration)
		w("rerun `make bench-compare` on a quiet machine for figures to quote.\n\n")
	}
	w("## Machine and versions\n\n")
	m := res.Machine
	w("- CPUs: %d × %s\n- kernel: %s\n", m.CPUs, m.CPUModel, m.Kernel)
	for _, v := range m.Versions {
		w("- %s: `%s`\n", v[0], v[1])
	}
	w("- run: %s, took %s\n", res.Started.UTC().Format(time.RFC3339), res.Took.Round(time.Second))
	w("\nCommand:\n\n```sh\n%s\n```\n\n", res.Command)
	w("## Charts\n\n")
	w("![unary throughput](%s)\n\n![latency percentiles](%s)\n\n![streaming throughput](%s)\n\n![memory](%s)\n\n",
		chartThroughput, chartLatency, chartStreaming, chartMemory)
	b.WriteString(Targets(res))
	w("\n## Tables\n\n")
	b.WriteString(Tables(res))
	path := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// barChart is one group of bars per series, one bar per peer in a group.
type barChart struct {
	title, ylabel string
	groups        []string    // x axis categories
	series        []string    // legend entries
	values        [][]float64 // [series][group]
	legendLeft    bool
}

func (c barChart) save(path string) error {
	p := plot.New()
	p.Title.Text = c.title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Y.Label.Text = c.ylabel
	p.Legend.Top = true
	p.Legend.Left = c.legendLeft
	// About 600 points of plot width: bars fill 70% of each group.
	width := vg.Points(0.7 * 600 / float64(max(1, len(c.groups))) / float64(max(1, len(c.series))))
	top := 0.0
	for i, s := range c.series {
		vals := make(plotter.Values, len(c.groups))
		for j := range c.groups {
			v := c.values[i][j]
			vals[j] = v
			top = max(top, v)
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("chart %s: %w", c.title, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = width * vg.Length(float64(i)-float64(len(c.series)-1)/2)
		p.Add(bars)
		p.Legend.Add(s, bars)
	}
	p.NominalX(c.groups...)
	// Room for the outer groups' bars and, above the bars, the legend.
	p.X.Min, p.X.Max = -0.5, float64(len(c.groups))-0.5
	p.Y.Min, p.Y.Max = 0, top*1.3
	p.Title.Padding = vg.Points(6)
	p.Add(plotter.NewGrid())
	p.BackgroundColor = color.White
	if err := p.Save(9*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("save chart %s: %w", path, err)
	}
	return nil
}

func writeCharts(res *Results, dir string) error {
	var names []string
	for _, p := range res.Peers {
		names = append(names, p.Name)
	}
	one := func(f func(PeerResult) float64) [][]float64 {
		v := make([]float64, len(res.Peers))
		for i, p := range res.Peers {
			v[i] = f(p)
		}
		return [][]float64{v}
	}
	charts := map[string]barChart{
		chartThroughput: {title: "Unary calls/s, saturated (higher is better)", ylabel: "calls/s", groups: names,
			series: []string{"calls/s"}, values: one(func(p PeerResult) float64 { return p.Saturation.PerSecond })},
		chartStreaming: {title: "One bidi stream, 1 MiB messages (higher is better)", ylabel: "MiB/s", groups: names,
			series: []string{"MiB/s"}, values: one(func(p PeerResult) float64 { return p.Large.BytesPS / (1 << 20) })},
	}
	// Latency: one group per percentile, one bar per peer, at the middle rate.
	mid := len(LatencyFractions) / 2
	lat := barChart{title: fmt.Sprintf("Unary latency at %.0f%% of direct's saturated rate (lower is better)", LatencyFractions[mid]*100),
		ylabel: "µs", groups: []string{"p50", "p90", "p99", "p99.9"}, legendLeft: true}
	for _, p := range res.Peers {
		v := make([]float64, 4)
		if mid < len(p.Latency) {
			l := p.Latency[mid]
			for i, d := range []time.Duration{l.P50, l.P90, l.P99, l.P999} {
				v[i] = float64(d) / float64(time.Microsecond)
			}
		}
		lat.series = append(lat.series, p.Name)
		lat.values = append(lat.values, v)
	}
	charts[chartLatency] = lat
	// Memory: at the largest connection count, per connection and per stream.
	var proxies []string
	conn, stream := []float64{}, []float64{}
	last := len(res.Options.Conns) - 1
	for _, p := range res.Peers {
		if p.Name == Direct {
			continue
		}
		proxies = append(proxies, p.Name)
		var c, s float64
		if last >= 0 && last < len(p.Memory) {
			c, s = p.Memory[last].PerConnBytes/1024, p.Memory[last].PerStreamByte/1024
		}
		conn, stream = append(conn, c), append(stream, s)
	}
	n := 0
	if last >= 0 {
		n = res.Options.Conns[last]
	}
	charts[chartMemory] = barChart{title: fmt.Sprintf("Proxy RSS growth at %d idle connections (lower is better)", n),
		ylabel: "KiB", groups: proxies, series: []string{"per idle connection", "per idle open stream"},
		values: [][]float64{conn, stream}}
	for name, c := range charts {
		if err := c.save(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// latencyTable writes one latency table: get returns a peer's run, false
// when it has none.
func latencyTable(w func(string, ...any), res *Results, direct *PeerResult, get func(PeerResult) (Latency, bool)) {
	w("| peer | target calls/s | achieved | p50 | p90 | p99 | p99.9 |\n|---|---:|---:|---:|---:|---:|---:|\n")
	var ref Latency
	hasRef := false
	if direct != nil {
		ref, hasRef = get(*direct)
	}
	for _, p := range res.Peers {
		l, ok := get(p)
		if !ok {
			w("| %s | – | – | – | – | – | – |\n", p.Name)
			continue
		}
		cell := func(v, r time.Duration) string {
			if !hasRef || p.Name == Direct {
				return us(v)
			}
			return us(v) + " (" + ratio(float64(v), float64(r)) + ")"
		}
		w("| %s | %.0f | %.0f | %s | %s | %s | %s |\n", p.Name, l.TargetRPS, l.RPS,
			cell(l.P50, ref.P50), cell(l.P90, ref.P90), cell(l.P99, ref.P99), cell(l.P999, ref.P999))
	}
}

// footprintTable renders each proxy's idle footprint: a fresh process's
// RSS and threads before the memory scenario's first connection.
func footprintTable(w func(string, ...any), res *Results) {
	idle := func(p PeerResult) *Memory {
		if len(p.Memory) > 0 && p.Memory[0].IdleRSSBytes > 0 {
			return &p.Memory[0]
		}
		return nil
	}
	bestRSS := best(res, true, func(p PeerResult) float64 {
		if m := idle(p); m != nil {
			return float64(m.IdleRSSBytes)
		}
		return 0
	})
	if bestRSS == 0 {
		return
	}
	w("\n### Idle footprint: what each pod pays for the proxy\n\n")
	w("RSS of each proxy's processes (workers included), started fresh, after the readiness calls (and, for hangup, three rounds of the kubelet's ")
	w("`/readyz` and `/healthz` probes, which every injected pod gets) and before the memory scenario's first connection, once settled (as above). ")
	w("hangup is the pod's binary as the `hangup` image ships it (`-tags hangup_pod`, static, stripped: %.1f MiB). ", float64(res.SidecarBinaryBytes)/(1<<20))
	w("*Anonymous* is the process's own memory (heap, stacks, RssAnon); the rest of the RSS is file pages, the binary's and shared libraries', ")
	w("which every process of the same image on a node shares through the page cache. Ratios to the proxy that needs least.\n\n")
	w("| peer | idle RSS, MiB | × best | anonymous, MiB | threads |\n|---|---:|---:|---:|---:|\n")
	for _, p := range res.Peers {
		if m := idle(p); m != nil {
			w("| %s | %.1f | %s | %.1f | %d |\n", p.Name, float64(m.IdleRSSBytes)/(1<<20), ratio(float64(m.IdleRSSBytes), bestRSS),
				float64(m.IdleAnonBytes)/(1<<20), m.IdleThreads)
		}
	}
}

// pairedTable renders the interleaved rounds of hangup against the splice
// relay and against itself traced: each round's ratios, and their medians,
// which the targets take.
func pairedTable(w func(string, ...any), res *Results) {
	p := res.Paired
	if p == nil {
		return
	}
	w("\n### hangup against the splice relay, interleaved\n\n")
	w("The splice relay, hangup and hangup with tracing always on, started side by side and measured in turn (saturated unary as above, then 1 MiB streaming), ")
	w("%.0f s per scenario, the order reversed each round, so that the machine's drift over the run reaches both sides of each ratio alike. ", p.Seconds)
	w("The targets take the median of the rounds.\n\n")
	w("| round | relay calls/s | hangup calls/s | × | relay CPU s / 1M | hangup CPU s / 1M | × | traced calls/s | × untraced | relay MiB/s | hangup MiB/s | × |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, r := range p.Rounds {
		w("| %d | %.0f | %.0f | %.2f× | %.1f | %.1f | %.2f× | %.0f | %.2f× | %.0f | %.0f | %.2f× |\n", i+1,
			r.Relay.CallsPerS, r.Hangup.CallsPerS, throughputRatio(r),
			r.Relay.CPUPerMillion, r.Hangup.CPUPerMillion, cpuRatio(r),
			r.Traced.CallsPerS, tracingRatio(r),
			r.Relay.StreamBytesPS/(1<<20), r.Hangup.StreamBytesPS/(1<<20), streamingRatio(r))
	}
	med := func(f func(PairedRound) float64) string {
		if m, _, _, ok := p.Median(f); ok {
			return fmt.Sprintf("**%.2f×**", m)
		}
		return "–"
	}
	w("| median | | | %s | | | %s | | %s | | | %s |\n", med(throughputRatio), med(cpuRatio), med(tracingRatio), med(streamingRatio))
	if res.PairedErr != "" {
		w("\nStopped short: %s\n", res.PairedErr)
	}
}
