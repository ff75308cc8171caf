//go:build linux

// Package harness runs hangup and real HTTP/2 proxies (haproxy, nginx,
// nghttpx) plus a splice-based TCP relay in front of the same grpc-go app,
// all on 127.0.0.1, and measures each the same way in one run: unary
// throughput and latency at fixed rates, streaming throughput, CPU per
// million requests, memory per idle connection and stream, and hangup's own
// disconnect notification speed. bench/compare is its command; Report
// writes docs/BENCHMARKS.md and its charts.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
)

// Options say what to run. The zero value of a field means its default.
type Options struct {
	// Peers to measure, from AllPeers. Default: all of them.
	Peers []string
	// Duration of each timed scenario. Default: 8s (a full run of all six
	// peers then takes about 10 minutes: per peer six timed scenarios, 4s
	// of h2load warm-up, the memory scenario and, for hangup, the notify
	// samples; then the interleaved rounds at half the length). Minimum:
	// 1s.
	Duration time.Duration
	// Conns are the connection counts of the memory scenario.
	// Default: 1000 and 10000.
	Conns []int
	// Short shrinks the sample counts (notify latency, burst) for CI.
	Short bool
	// H2loadConns and H2loadStreams shape the saturating load: connections
	// and concurrent streams per connection. Default: 4 and 32.
	H2loadConns, H2loadStreams int
	// ModuleRoot is the hangup checkout to build the sidecar from.
	// Default: asked from `go list -m`.
	ModuleRoot string
	// Log receives progress lines. Default: discarded.
	Log io.Writer
}

func (o *Options) defaults() error {
	if len(o.Peers) == 0 {
		o.Peers = AllPeers
	}
	for _, p := range o.Peers {
		if !slices.Contains(AllPeers, p) {
			return fmt.Errorf("unknown peer %q: want one of %s", p, strings.Join(AllPeers, ", "))
		}
	}
	if !slices.Contains(o.Peers, Direct) {
		o.Peers = append([]string{Direct}, o.Peers...) // every ratio needs it
	}
	if o.Duration == 0 {
		o.Duration = 8 * time.Second
	}
	if o.Duration < time.Second {
		return fmt.Errorf("invalid duration %s: want at least 1s", o.Duration)
	}
	if len(o.Conns) == 0 {
		o.Conns = []int{1000, 10000}
	}
	for _, n := range o.Conns {
		if n < 1 {
			return fmt.Errorf("invalid connection count %d: want at least 1", n)
		}
	}
	if o.H2loadConns == 0 {
		o.H2loadConns = 4
	}
	if o.H2loadStreams == 0 {
		o.H2loadStreams = 32
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// UnloadedRPS is the rate of the one-call-at-a-time latency scenario: low
// enough that every call finds the machine idle.
const UnloadedRPS = 2000

// LatencyFractions are the fixed rates of the latency scenario, as
// fractions of direct's saturated throughput.
var LatencyFractions = []float64{0.25, 0.50, 0.75}

// PeerResult is everything measured for one peer.
type PeerResult struct {
	Name       string
	Saturation Saturation
	// CPUPerMillion is the peer's CPU seconds per million unary calls during
	// the saturation run; 0 for direct.
	CPUPerMillion float64
	Latency       []Latency // one per LatencyFractions
	// Unloaded is one call at a time (UnloadedRPS calls/s on one stream):
	// what the hop itself adds, with no queue behind it.
	Unloaded Latency
	Large    Streaming // 1 MiB messages
	Small    Streaming // small messages
	Memory   []Memory  // one per Options.Conns; empty for direct
	// Traced is the saturated run again with tracing always on; hangup
	// only, nil for the others or when it failed.
	Traced *Traced
	Errors []string // scenarios that failed, with why
}

// Results is one run.
type Results struct {
	Options   Options
	Started   time.Time
	Command   string // how the run was started, for the report
	Took      time.Duration
	Machine   Machine
	Peers     []PeerResult
	Notify    *NotifyResult // nil when hangup was not measured
	NotifyErr string        // why the notify scenario failed, if it did
	// Paired is hangup against the splice relay in alternating rounds;
	// nil when either was not measured. PairedErr says why it stopped
	// short, if it did (Paired then has the rounds before).
	Paired    *Paired
	PairedErr string
	// SidecarBinaryBytes is the size of the sidecar binary measured (the
	// pod's, as the image ships it).
	SidecarBinaryBytes int64
	// ConnsAsked are the memory scenario's counts as asked; Options.Conns
	// has those the open files limit (FDLimit) allowed.
	ConnsAsked []int
	FDLimit    int
}

// Run measures every peer in opts and returns the results. A peer that
// cannot start fails the run with the reason (for a missing binary, the
// install command); a scenario that fails is recorded in the peer's Errors.
func Run(ctx context.Context, opts Options) (*Results, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	res := &Results{Options: opts, Started: time.Now()}
	logf := func(format string, a ...any) { fmt.Fprintf(opts.Log, format+"\n", a...) }
	maxConns := 0
	for _, n := range opts.Conns {
		maxConns = max(maxConns, n)
	}
	fdLimit, err := raiseFDLimit(peerFDs(TCPRelay, maxConns))
	if err != nil {
		return nil, err
	}
	// This process holds both ends it owns of every connection (the
	// client's and the app's), and a proxy two sockets: a count beyond the
	// descriptor limit is measured at the largest count that fits instead.
	res.FDLimit, res.ConnsAsked, opts.Conns = fdLimit, opts.Conns, slices.Clone(opts.Conns)
	for i, n := range opts.Conns {
		if fdsFor(n) > fdLimit {
			// Room for a peer's own margin too: haproxy asks for twice
			// its maxconn (the count plus 256) and more.
			opts.Conns[i] = (fdLimit - 2*fdsFor(0)) / 2
			logf("%d connections need %d open files and the limit is %d: measuring memory at %d connections instead",
				n, fdsFor(n), fdLimit, opts.Conns[i])
		}
	}
	res.Options = opts
	// Every external binary first: a missing one should fail in a second,
	// not after minutes of measuring the others.
	if _, err := findBin("h2load"); err != nil {
		return nil, err
	}
	for _, p := range opts.Peers {
		if p == HAProxy || p == Nginx || p == Nghttpx {
			if _, err := findBin(p); err != nil {
				return nil, err
			}
		}
	}
	dir, err := os.MkdirTemp("", "hangup-bench-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	// Peers size themselves (haproxy's maxconn, nginx's worker_connections)
	// for the largest count this machine's descriptor limit allows: a count
	// beyond it is reported as failed, with why, instead of stopping a peer.
	sized := 0
	for _, n := range opts.Conns {
		if fdsFor(n) <= fdLimit {
			sized = max(sized, n)
		}
	}
	env := PeerEnv{Dir: dir, MaxConns: sized}
	if env.SidecarBin, env.RelayBin, err = BuildBinaries(ctx, opts.ModuleRoot, dir); err != nil {
		return nil, err
	}
	if st, err := os.Stat(env.SidecarBin); err == nil {
		res.SidecarBinaryBytes = st.Size()
	}

	app, stopApp, err := StartApp()
	if err != nil {
		return nil, err
	}
	defer stopApp()
	env.AppAddr = app
	recv := demoapp.NewReceiver(1 << 16)
	notifyAddr, stopNotify, err := StartReceiver(recv)
	if err != nil {
		return nil, err
	}
	defer stopNotify()
	env.NotifyAddr = notifyAddr
	if res.Machine, err = describeMachine(ctx, env); err != nil {
		return nil, err
	}

	d := opts.Duration
	var directRate float64
	for _, name := range opts.Peers {
		logf("== %s", name)
		p, err := StartPeer(ctx, name, env)
		if err != nil {
			return nil, err
		}
		pr := PeerResult{Name: name}
		fail := func(scenario string, err error) {
			pr.Errors = append(pr.Errors, scenario+": "+err.Error())
			logf("   %s FAILED: %v", scenario, err)
		}
		sat, cpu, err := saturate(ctx, dir, p, d, opts.H2loadConns, opts.H2loadStreams)
		if err != nil {
			fail("saturation", err)
		} else {
			pr.Saturation, pr.CPUPerMillion = sat, cpu
			logf("   saturation %.0f calls/s (%d failed)", sat.PerSecond, sat.Failed)
			if cpu > 0 {
				logf("   CPU %.1f s per million calls", cpu)
			}
		}
		if name == Direct {
			directRate = sat.PerSecond
		}
		if l, err := runRate(ctx, dir, p.Addr, UnloadedRPS, d, 1, 1); err != nil {
			fail("unloaded latency", err)
		} else {
			pr.Unloaded = l
			logf("   one call at a time: p50 %s p90 %s p99 %s p99.9 %s", l.P50, l.P90, l.P99, l.P999)
		}
		for _, f := range LatencyFractions {
			if directRate == 0 {
				fail("latency", errors.New("no direct saturation rate to take fractions of"))
				break
			}
			l, err := runRate(ctx, dir, p.Addr, f*directRate, d, opts.H2loadConns, opts.H2loadStreams)
			if err != nil {
				fail(fmt.Sprintf("latency at %.0f%%", f*100), err)
				continue
			}
			pr.Latency = append(pr.Latency, l)
			logf("   latency at %.0f calls/s (got %.0f): p50 %s p90 %s p99 %s p99.9 %s",
				l.TargetRPS, l.RPS, l.P50, l.P90, l.P99, l.P999)
		}
		if pr.Large, err = stream1MiB(ctx, p, d); err != nil {
			fail("streaming 1 MiB", err)
		} else {
			logf("   streaming 1 MiB messages: %.0f MiB/s, proxy CPU %.2f s per GiB", pr.Large.BytesPS/(1<<20), pr.Large.CPUPerGiB)
		}
		if pr.Small, err = runStreaming(ctx, p.Addr, 10, 64, d); err != nil {
			fail("streaming small", err)
		} else {
			logf("   streaming small messages: %.0f msg/s", pr.Small.MsgPerSec)
		}
		if name != Direct {
			for _, n := range opts.Conns {
				if need := peerFDs(name, n); need > fdLimit {
					fail(fmt.Sprintf("memory at %d connections", n), fmt.Errorf("%s needs %d open files, the limit is %d and cannot be raised here (needs root with CAP_SYS_RESOURCE, or a higher ulimit -Hn)", name, need, fdLimit))
					continue
				}
				m, err := measureMemoryFresh(ctx, name, env, n)
				if err != nil {
					fail(fmt.Sprintf("memory at %d connections", n), err)
					continue
				}
				pr.Memory = append(pr.Memory, m)
				logf("   memory at %d connections: %.1f KiB per connection, %.1f KiB per stream",
					n, m.PerConnBytes/1024, m.PerStreamByte/1024)
			}
		}
		if name == Hangup {
			rst, kills, bc, bs := 1000, 100, 100, 100
			if opts.Short {
				rst, kills, bc, bs = 50, 5, 10, 100
			}
			nr, err := measureNotify(ctx, p, recv, rst, kills, bc, bs)
			if err != nil {
				res.NotifyErr = err.Error()
				logf("   notify FAILED: %v", err)
			} else {
				res.Notify = &nr
				logf("   notify: RST_STREAM p50 %s p99 %s; killed client p50 %s p99 %s (%s p50 after detection); burst %d at %.0f events/s",
					nr.RSTp50, nr.RSTp99, nr.KillP50, nr.KillP99, nr.KillDeliveryP50, nr.Burst, nr.BurstEventsPerS)
			}
		}
		p.Stop()
		if name == Hangup {
			// After the untraced peer is gone, so that the two do not
			// share the CPUs.
			if tr, err := measureTraced(ctx, env, dir, d, opts.H2loadConns, opts.H2loadStreams); err != nil {
				fail("tracing always on", err)
			} else {
				pr.Traced = &tr
				logf("   tracing always on: %.0f calls/s, CPU %.1f s per million calls, %d spans exported",
					tr.Saturation.PerSecond, tr.CPUPerMillion, tr.Spans)
			}
		}
		res.Peers = append(res.Peers, pr)
	}
	if slices.Contains(opts.Peers, Hangup) && slices.Contains(opts.Peers, TCPRelay) {
		logf("== hangup against the splice relay, interleaved")
		rounds := pairedRounds
		if opts.Short {
			rounds = 2
		}
		paired, err := measurePaired(ctx, env, dir, rounds, max(d/2, time.Second), opts.H2loadConns, opts.H2loadStreams, logf)
		res.Paired = paired
		if err != nil {
			res.PairedErr = err.Error()
			logf("   FAILED: %v", err)
		}
	}
	res.Took = time.Since(res.Started)
	return res, nil
}

// measureMemoryFresh measures memory in a new process of the peer: in one
// that has carried load, memory freed by the load runs (garbage, pooled
// buffers) would absorb the connections' growth and flatter the figure.
func measureMemoryFresh(ctx context.Context, name string, env PeerEnv, conns int) (Memory, error) {
	p, err := StartPeer(ctx, name, env)
	if err != nil {
		return Memory{}, err
	}
	defer p.Stop()
	m, err := MeasureMemory(ctx, p, conns, nil)
	if err != nil {
		return m, fmt.Errorf("%w; %s says: %s", err, name, tail(p.Output(), 300))
	}
	return m, nil
}

// raiseFDLimit lifts RLIMIT_NOFILE towards n (the memory scenario holds a
// client and an app fd per connection in this process; the proxies inherit
// the limit and hold two per connection). Without CAP_SYS_RESOURCE it can
// only go up to the hard limit; it returns the limit it got.
func raiseFDLimit(n int) (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open files limit: %w", err)
	}
	want := uint64(n)
	if lim.Cur >= want {
		return int(lim.Cur), nil
	}
	raised := lim
	raised.Cur = want
	raised.Max = max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return n, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise the open files limit to the hard limit %d: %w", lim.Max, err)
	}
	return int(lim.Max), nil
}

// peerFDs is how many descriptors peer needs to hold conns connections.
// tcprelay needs three per side: Go's splice holds a pipe (two fds) for
// each direction while it waits for data.
func peerFDs(peer string, conns int) int {
	if peer == TCPRelay {
		return 6*conns + 512
	}
	return fdsFor(conns)
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// fdsFor is how many descriptors a process needs to hold conns
// connections on both sides, with room for everything else it has open.
func fdsFor(conns int) int { return 2*conns + 512 }

// BuildBinaries builds the sidecar and tcprelay into dir. The sidecar is
// the pod's binary, built as the hangup image builds it (-tags hangup_pod,
// static and stripped), so that its footprint is the one a pod pays.
func BuildBinaries(ctx context.Context, root, dir string) (sidecar, relay string, err error) {
	if root == "" {
		out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			return "", "", fmt.Errorf("find the module root with go list -m (run inside the hangup checkout): %w", err)
		}
		root = strings.TrimSpace(string(out))
	}
	sidecar, relay = filepath.Join(dir, "bin", "sidecar"), filepath.Join(dir, "bin", "tcprelay")
	for _, b := range []struct {
		out, pkg string
		flags    []string
	}{
		{sidecar, "./cmd/sidecar", []string{"-tags", "hangup_pod", "-trimpath", "-ldflags=-s -w"}},
		{relay, "./bench/tcprelay", nil},
	} {
		args := append(append([]string{"build", "-o", b.out}, b.flags...), b.pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), root, err, out)
		}
	}
	return sidecar, relay, nil
}

// StartApp serves the demo app (grpc.testing.TestService) on loopback,
// with opts added to its server's options.
func StartApp(opts ...grpc.ServerOption) (addr string, stop func(), err error) {
	app := demoapp.New(0)
	app.Ended = nil
	gs := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20), grpc.MaxSendMsgSize(4 << 20)}, opts...)...)
	app.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the app: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	return ln.Addr().String(), func() { gs.Stop(); <-done }, nil
}

// StartReceiver serves DisconnectNotify for hangup on loopback.
func StartReceiver(recv *demoapp.Receiver) (addr string, stop func(), err error) {
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(gs, recv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for DisconnectNotify: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	return ln.Addr().String(), func() { gs.Stop(); <-done }, nil
}
