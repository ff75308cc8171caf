//go:build linux

package harness

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Paired is hangup measured against the splice relay, and against itself
// with tracing always on, in alternating rounds within one stretch of the
// run. On these shared cores the machine's speed drifts by tens of percent
// over a run, and a ratio of two figures taken minutes apart carries that
// drift: each round measures every side back to back (in the opposite
// order the next round), and the targets take the median of the rounds'
// ratios.
type Paired struct {
	Rounds []PairedRound
	// Seconds is each scenario's length in a round.
	Seconds float64
}

// PairedRound is one round's figures for each side.
type PairedRound struct {
	Relay, Hangup, Traced PairedSide
}

// PairedSide is one side's saturated unary rate and CPU per million calls
// and, but for the traced side, its 1 MiB streaming rate.
type PairedSide struct {
	CallsPerS     float64
	CPUPerMillion float64
	StreamBytesPS float64
}

// pairedRounds is how many rounds a run takes; a short run takes 2.
const pairedRounds = 3

// The ratios of a round that the targets take.
func throughputRatio(r PairedRound) float64 { return r.Hangup.CallsPerS / r.Relay.CallsPerS }
func cpuRatio(r PairedRound) float64        { return r.Hangup.CPUPerMillion / r.Relay.CPUPerMillion }
func tracingRatio(r PairedRound) float64    { return r.Traced.CallsPerS / r.Hangup.CallsPerS }
func streamingRatio(r PairedRound) float64  { return r.Hangup.StreamBytesPS / r.Relay.StreamBytesPS }

// Median returns the median of ratio over the rounds, with the lowest and
// highest; ok is false when no round has it (a figure missing or zero).
func (p *Paired) Median(ratio func(PairedRound) float64) (med, lo, hi float64, ok bool) {
	if p == nil {
		return 0, 0, 0, false
	}
	var rs []float64
	for _, r := range p.Rounds {
		if v := ratio(r); v > 0 && !math.IsInf(v, 0) {
			rs = append(rs, v)
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0, false
	}
	slices.Sort(rs)
	n := len(rs)
	med = rs[n/2]
	if n%2 == 0 {
		med = (rs[n/2-1] + rs[n/2]) / 2
	}
	return med, rs[0], rs[n-1], true
}

// MedianOr returns the median of f over the rounds, or fallback when no
// round has it.
func (p *Paired) MedianOr(f func(PairedRound) float64, fallback float64) float64 {
	if med, _, _, ok := p.Median(f); ok {
		return med
	}
	return fallback
}

// measurePaired starts the splice relay, hangup and hangup with tracing
// always on, side by side (each idle while another is measured), and runs
// rounds rounds of d-long scenarios through them.
func measurePaired(ctx context.Context, env PeerEnv, dir string, rounds int, d time.Duration, conns, streams int, logf func(string, ...any)) (*Paired, error) {
	relay, err := StartPeer(ctx, TCPRelay, env)
	if err != nil {
		return nil, err
	}
	defer relay.Stop()
	hangup, err := StartPeer(ctx, Hangup, env)
	if err != nil {
		return nil, err
	}
	defer hangup.Stop()
	traced, _, stopTraced, err := startTraced(ctx, env)
	if err != nil {
		return nil, err
	}
	defer stopTraced()

	res := &Paired{Seconds: d.Seconds()}
	for i := range rounds {
		var r PairedRound
		sides := []struct {
			name   string
			p      *Peer
			out    *PairedSide
			stream bool
		}{{TCPRelay, relay, &r.Relay, true}, {Hangup, hangup, &r.Hangup, true}, {"hangup traced", traced, &r.Traced, false}}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		for _, s := range sides {
			sat, cpu, err := saturate(ctx, dir, s.p, d, conns, streams)
			if err != nil {
				return res, fmt.Errorf("round %d, %s, saturated unary: %w", i+1, s.name, err)
			}
			s.out.CallsPerS, s.out.CPUPerMillion = sat.PerSecond, cpu
		}
		for _, s := range sides {
			if !s.stream {
				continue
			}
			st, err := stream1MiB(ctx, s.p, d)
			if err != nil {
				return res, fmt.Errorf("round %d, %s, streaming 1 MiB: %w", i+1, s.name, err)
			}
			s.out.StreamBytesPS = st.BytesPS
		}
		res.Rounds = append(res.Rounds, r)
		logf("   round %d: unary %.2f× the relay, CPU %.2f×, traced %.2f× untraced, streaming %.2f×",
			i+1, throughputRatio(r), cpuRatio(r), tracingRatio(r), streamingRatio(r))
	}
	return res, nil
}

// saturate runs the saturating unary load through p for d and returns
// it with p's CPU seconds per million calls (0 when p has no process to
// read, as direct).
func saturate(ctx context.Context, dir string, p *Peer, d time.Duration, conns, streams int) (Saturation, float64, error) {
	before, uerr := p.Usage()
	sat, _, err := runH2load(ctx, dir, p.Addr, d, conns, streams, 0)
	if err != nil {
		return sat, 0, err
	}
	var cpu float64
	if after, err := p.Usage(); uerr == nil && err == nil && sat.PerSecond > 0 {
		// The CPU reading spans the warm-up too, which h2load does not
		// count: assume the same rate throughout.
		cpu = (after.CPUSeconds - before.CPUSeconds) / (sat.PerSecond * sat.Wall) * 1e6
	}
	return sat, cpu, nil
}

// stream1MiB keeps a stream of 1 MiB messages busy through p for d, with
// p's CPU seconds per GiB when it can be read.
func stream1MiB(ctx context.Context, p *Peer, d time.Duration) (Streaming, error) {
	before, uerr := p.Usage()
	st, err := runStreaming(ctx, p.Addr, 1<<20, 4, d)
	if err != nil {
		return st, err
	}
	if after, err := p.Usage(); uerr == nil && err == nil && st.Bytes > 0 {
		st.CPUPerGiB = (after.CPUSeconds - before.CPUSeconds) / (float64(st.Bytes) / (1 << 30))
	}
	return st, nil
}
