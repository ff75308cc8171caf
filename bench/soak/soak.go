//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hangup-dev/hangup/bench/harness"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
)

// kind is one way a client connection ends.
type kind int

const (
	kindRST      kind = iota // RST_STREAM(CANCEL), then a clean close with no stream open
	kindClose                // TCP FIN with a stream open
	kindReset                // TCP RST with a stream open
	kindSilent               // stops reading and answering PINGs: keepalive 1s/1s
	kindProtocol             // CONTINUATION without HEADERS: a connection PROTOCOL_ERROR
	kindNormal               // unary call and bidi stream complete
	numKinds
)

func (k kind) String() string {
	return [...]string{"RST_STREAM", "close", "TCP reset", "silent", "protocol error", "normal completion"}[k]
}

// expected are the events the sidecar must send for one connection that
// ends in this way: one per open stream and, when the end was abnormal or
// streams were open, one for the connection (pkg/proxy conn.lose).
func (k kind) expected() []eventKey {
	both := func(r event.Reason) []eventKey {
		return []eventKey{{event.ScopeStream, r}, {event.ScopeConnection, r}}
	}
	switch k {
	case kindRST:
		return []eventKey{{event.ScopeStream, event.ReasonRSTStream}}
	case kindClose:
		return both(event.ReasonConnectionClosed)
	case kindReset:
		return both(event.ReasonConnectionReset)
	case kindSilent:
		return both(event.ReasonKeepaliveTimeout)
	case kindProtocol:
		return both(event.ReasonProtocolError)
	}
	return nil
}

type eventKey struct {
	Scope  event.Scope
	Reason event.Reason
}

func (k eventKey) String() string {
	s := "stream"
	if k.Scope == event.ScopeConnection {
		s = "connection"
	}
	return s + " " + k.Reason.String()
}

// config shapes one soak run.
type config struct {
	Duration time.Duration // how long connections keep being opened
	Rate     int           // connections opened per second, spread over the kinds
	Workers  int           // connections in flight at most
	Traced   bool          // every stream traced, exported over OTLP to a counting receiver
	Log      io.Writer
}

// result is what the soak saw.
type result struct {
	Caused         map[eventKey]int // events the harness's disconnects must produce
	Received       map[eventKey]int // events the receiver got, for the harness's connections
	Strangers      int              // events about connections the harness did not make
	StrangerEvents []string         // each stranger: "peer: n × scope reason"
	Dups           []string         // connections with more events than expected
	Episodes       map[kind]int
	Failed         []string // episodes that could not run, with why
	Base, End      harness.ProcUsage
	Goroutine      [2]int // /metrics go_goroutines at baseline and end; -1 when not exported
	Streamed       int64  // messages on the long-running stream
	Traced         bool   // the sidecar traced every stream (-traced)
	Spans          int64  // spans the OTLP receiver got by the end, when Traced
	// NewFDs are the sidecar's descriptors at the end that were not open at
	// baseline (their /proc/PID/fd link targets), to tell a leak from a
	// lazily opened runtime descriptor.
	NewFDs []string
}

// check returns every broken promise of the soak.
func (r *result) check() error {
	var errs []error
	keys := map[eventKey]bool{}
	for k := range r.Caused {
		keys[k] = true
	}
	for k := range r.Received {
		keys[k] = true
	}
	for k := range keys {
		if r.Caused[k] != r.Received[k] {
			errs = append(errs, fmt.Errorf("%s: caused %d disconnects, the receiver got %d events", k, r.Caused[k], r.Received[k]))
		}
	}
	if len(r.Dups) > 0 {
		errs = append(errs, fmt.Errorf("%d connections got more events than disconnects, first: %s", len(r.Dups), r.Dups[0]))
	}
	if r.Strangers > 0 {
		errs = append(errs, fmt.Errorf("%d events about connections the soak never made: %v", r.Strangers, r.StrangerEvents))
	}
	if len(r.Failed) > 0 {
		errs = append(errs, fmt.Errorf("%d episodes failed, first: %s", len(r.Failed), r.Failed[0]))
	}
	if r.End.FDs > r.Base.FDs+fdSlack {
		errs = append(errs, fmt.Errorf("sidecar holds %d fds at the end, %d at baseline: leaked", r.End.FDs, r.Base.FDs))
	}
	if r.End.RSSBytes > max(2*r.Base.RSSBytes, r.Base.RSSBytes+rssSlack) {
		errs = append(errs, fmt.Errorf("sidecar RSS %d KiB at the end, %d KiB at baseline", r.End.RSSBytes>>10, r.Base.RSSBytes>>10))
	}
	if r.Traced && r.Spans == 0 {
		errs = append(errs, errors.New("tracing was on, but no span reached the OTLP receiver"))
	}
	if r.Goroutine[0] < 0 || r.Goroutine[1] < 0 {
		errs = append(errs, errors.New("sidecar /metrics has no go_goroutines: cannot check for leaked goroutines"))
	} else if r.Goroutine[1] > r.Goroutine[0]+goroutineSlack {
		errs = append(errs, fmt.Errorf("sidecar runs %d goroutines at the end, %d at baseline", r.Goroutine[1], r.Goroutine[0]))
	}
	return errors.Join(errs...)
}

// Slack allowed at the end over the baseline: the notifier's and the
// admin server's own connections come and go; the Go runtime keeps freed
// memory for a while.
const (
	fdSlack        = 2
	rssSlack       = 32 << 20
	goroutineSlack = 10
	settleTimeout  = 30 * time.Second
)

// run soaks a freshly built sidecar.
func run(ctx context.Context, cfg config) (*result, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.Log, format+"\n", a...) }
	dir, err := os.MkdirTemp("", "hangup-soak-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	sidecarBin, _, err := harness.BuildBinaries(ctx, "", dir)
	if err != nil {
		return nil, err
	}
	appAddr, stopApp, err := harness.StartApp()
	if err != nil {
		return nil, err
	}
	defer stopApp()
	recv := demoapp.NewReceiver(1 << 16)
	notifyAddr, stopRecv, err := harness.StartReceiver(recv)
	if err != nil {
		return nil, err
	}
	defer stopRecv()
	env := harness.PeerEnv{Dir: dir, AppAddr: appAddr, NotifyAddr: notifyAddr,
		SidecarBin: sidecarBin, HangupArgs: []string{"--keepalive-time", "1s", "--keepalive-timeout", "1s"}}
	var p *harness.Peer
	spans := func() int64 { return 0 }
	if cfg.Traced {
		var stop func()
		if p, spans, stop, err = harness.StartTraced(ctx, env); err != nil {
			return nil, err
		}
		defer stop()
	} else {
		if p, err = harness.StartPeer(ctx, harness.Hangup, env); err != nil {
			return nil, err
		}
		defer p.Stop()
	}

	// The receiver's events, counted per connection by one goroutine.
	var mu sync.Mutex
	perConn := map[string]map[eventKey]int{}
	total := 0
	changed := make(chan struct{}, 1) // a token after each event
	recvCtx, stopCounting := context.WithCancel(ctx)
	var counted sync.WaitGroup
	counted.Add(1)
	go func() {
		defer counted.Done()
		for {
			select {
			case <-recvCtx.Done():
				return
			case r := <-recv.Events:
				mu.Lock()
				m := perConn[r.Event.PeerAddress]
				if m == nil {
					m = map[eventKey]int{}
					perConn[r.Event.PeerAddress] = m
				}
				m[eventKey{r.Event.Scope, r.Event.Reason}]++
				total++
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() { stopCounting(); counted.Wait() }()

	res := &result{Caused: map[eventKey]int{}, Received: map[eventKey]int{}, Episodes: map[kind]int{}, Goroutine: [2]int{-1, -1},
		Traced: cfg.Traced}
	// Client address → events it must cause. The kernel reuses a closed
	// connection's ephemeral port within minutes, so an address collects
	// the events of every episode that used it.
	expect := map[string][]eventKey{}
	var emu sync.Mutex
	episode := func(k kind) {
		addr, err := runEpisode(ctx, p.Addr, k)
		emu.Lock()
		defer emu.Unlock()
		if err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", k, err))
			return
		}
		res.Episodes[k]++
		expect[addr] = append(expect[addr], k.expected()...)
		for _, e := range k.expected() {
			res.Caused[e]++
		}
	}
	waitEvents := func() error {
		emu.Lock()
		want := 0
		for _, n := range res.Caused {
			want += n
		}
		emu.Unlock()
		timer := time.NewTimer(settleTimeout)
		defer timer.Stop()
		for {
			mu.Lock()
			got := total
			mu.Unlock()
			if got >= want {
				return nil
			}
			select {
			case <-changed:
			case <-timer.C:
				mu.Lock()
				defer mu.Unlock()
				emu.Lock()
				defer emu.Unlock()
				var missing []string
				for addr, keys := range expect {
					for _, k := range keys {
						if perConn[addr][k] < count(keys, k) {
							missing = append(missing, fmt.Sprintf("%s from %s (got %v)", k, addr, perConn[addr]))
						}
					}
				}
				slices.Sort(missing)
				return fmt.Errorf("%d of %d events after %s; missing: %s", got, want, settleTimeout, strings.Join(missing, "; "))
			}
		}
	}

	// Warm up: every kind once, then the baseline.
	for k := range numKinds {
		episode(k)
	}
	if err := waitEvents(); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if res.Base, err = settledUsage(p, 0, 5*time.Second); err != nil {
		return nil, err
	}
	res.Goroutine[0] = goroutines(p.AdminAddr)
	baseFDs := fdTargets(p.Pid)
	logf("baseline: %d fds, %d threads, RSS %d KiB, goroutines %d", res.Base.FDs, res.Base.Threads, res.Base.RSSBytes>>10, res.Goroutine[0])

	// A long-running stream carries messages the whole time.
	streamCtx, stopStream := context.WithCancel(ctx)
	var streamed sync.WaitGroup
	var streamErr error
	streamed.Add(1)
	go func() {
		defer streamed.Done()
		res.Streamed, streamErr = longStream(streamCtx, p.Addr)
	}()

	interval := time.Second / time.Duration(max(1, cfg.Rate))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	sem := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	end := time.Now().Add(cfg.Duration)
	lastLog := time.Now()
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			stopStream()
			streamed.Wait()
			wg.Wait()
			return nil, ctx.Err()
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // every worker busy: the rate is as steady as the sidecar allows
		}
		wg.Add(1)
		go func(k kind) {
			defer wg.Done()
			defer func() { <-sem }()
			episode(k)
		}(kind(i % int(numKinds)))
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			if u, err := p.Usage(); err == nil {
				logf("%s left: %d fds, %d threads, RSS %d KiB", time.Until(end).Round(time.Second), u.FDs, u.Threads, u.RSSBytes>>10)
			}
		}
	}
	wg.Wait()
	stopStream()
	streamed.Wait()
	if streamErr != nil {
		res.Failed = append(res.Failed, "long-running stream: "+streamErr.Error())
	}
	if err := waitEvents(); err != nil {
		res.Failed = append(res.Failed, "events: "+err.Error())
	}
	if res.End, err = settledUsage(p, res.Base.FDs, 10*time.Second); err != nil {
		return nil, err
	}
	res.Goroutine[1] = goroutines(p.AdminAddr)
	res.Spans = spans()
	if res.End.FDs > res.Base.FDs {
		for fd, target := range fdTargets(p.Pid) {
			if baseFDs[fd] != target {
				res.NewFDs = append(res.NewFDs, fd+" -> "+target)
			}
		}
	}
	slices.Sort(res.NewFDs)

	mu.Lock()
	defer mu.Unlock()
	emu.Lock()
	defer emu.Unlock()
	for addr, got := range perConn {
		want, ok := expect[addr]
		if !ok {
			res.Strangers += sumCounts(got)
			for k, n := range got {
				res.StrangerEvents = append(res.StrangerEvents, fmt.Sprintf("%s: %d × %s", addr, n, k))
			}
			continue
		}
		for k, n := range got {
			res.Received[k] += n
			if n > count(want, k) {
				res.Dups = append(res.Dups, fmt.Sprintf("%s: %d × %s", addr, n, k))
			}
		}
	}
	return res, nil
}

func sumCounts(m map[eventKey]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func count(keys []eventKey, k eventKey) int {
	n := 0
	for _, v := range keys {
		if v == k {
			n++
		}
	}
	return n
}

// settledUsage reads p's usage until its fd count is at most fds (0: until
// two reads agree), or timeout passes, and returns the last read.
func settledUsage(p *harness.Peer, fds int, timeout time.Duration) (harness.ProcUsage, error) {
	deadline := time.Now().Add(timeout)
	// /proc says nothing when a descriptor closes: read it every 100ms.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	prev := -1
	for {
		u, err := p.Usage()
		if err != nil {
			return u, err
		}
		if (fds > 0 && u.FDs <= fds) || (fds == 0 && u.FDs == prev) || time.Now().After(deadline) {
			return u, nil
		}
		prev = u.FDs
		<-tick.C
	}
}

// fdTargets maps each open descriptor of pid to its link target (socket:[inode],
// anon_inode:[eventpoll], pipe:[inode], a path).
func fdTargets(pid int) map[string]string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, e := range entries {
		if t, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			m[e.Name()] = t
		}
	}
	return m
}

// goroutines reads go_goroutines from the sidecar's /metrics, or -1 when
// it does not export it.
func goroutines(admin string) int {
	// No keep-alive: an idle connection left behind would hold one of the
	// sidecar's descriptors and look like a leak.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// runEpisode opens one connection to addr and ends it as k says. It returns
// the connection's local address, which the sidecar's events carry.
func runEpisode(ctx context.Context, addr string, k kind) (string, error) {
	if k == kindNormal {
		return normalEpisode(ctx, addr)
	}
	c, err := h2raw.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	local := c.Conn.LocalAddr().String()
	if err := harness.OpenStreams(c, 1, 10*time.Second); err != nil {
		return "", err
	}
	switch k {
	case kindRST:
		if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			return "", fmt.Errorf("write RST_STREAM: %w", err)
		}
		// Close once the sidecar has passed the RST_STREAM on: its answer
		// to a PING sent after it proves it read it.
		if err := c.Framer.WritePing(false, [8]byte{1}); err != nil {
			return "", fmt.Errorf("write PING: %w", err)
		}
		if _, err := c.ReadUntil(10*time.Second, func(f http2.Frame) bool {
			pf, ok := f.(*http2.PingFrame)
			return ok && pf.IsAck()
		}); err != nil {
			return "", fmt.Errorf("wait for the PING ack after RST_STREAM: %w", err)
		}
		return local, c.Close()
	case kindClose:
		return local, c.Close()
	case kindReset:
		return local, c.Reset()
	case kindSilent:
		// Answer nothing, PINGs included, until the sidecar gives up on the
		// client (keepalive 1s + 1s) and closes.
		return local, waitClosed(c, 15*time.Second)
	case kindProtocol:
		// CONTINUATION without HEADERS. (DATA on stream 0 would not do: the
		// sidecar passes it on, the app ends the connection, and an app
		// that ends a connection gets no event.)
		if err := c.Framer.WriteContinuation(9, true, []byte{0x82}); err != nil {
			return "", fmt.Errorf("write CONTINUATION: %w", err)
		}
		return local, waitClosed(c, 10*time.Second)
	}
	return "", fmt.Errorf("unknown kind %d", k)
}

// waitClosed discards what arrives on c until the sidecar closes it.
func waitClosed(c *h2raw.Client, timeout time.Duration) error {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 32<<10)
	for {
		_, err := c.Conn.Read(buf)
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("the sidecar did not close the connection within %s", timeout)
			}
			return nil
		}
	}
}

// normalEpisode makes a unary call and a bidi stream that both complete,
// on a connection of its own, then closes it.
func normalEpisode(ctx context.Context, addr string) (string, error) {
	var local string
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				local = conn.LocalAddr().String()
			}
			return conn, err
		}))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := testgrpc.NewTestServiceClient(cc)
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
		return "", fmt.Errorf("unary call: %w", err)
	}
	s, err := c.FullDuplexCall(ctx)
	if err != nil {
		return "", fmt.Errorf("open bidi stream: %w", err)
	}
	for range 3 {
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}}); err != nil {
			return "", fmt.Errorf("send: %w", err)
		}
		if _, err := s.Recv(); err != nil {
			return "", fmt.Errorf("receive: %w", err)
		}
	}
	if err := s.CloseSend(); err != nil {
		return "", err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("bidi stream end: %v, want EOF", err)
	}
	return local, nil
}

// longStream keeps one bidi stream busy until ctx ends, then half-closes it
// so that it completes normally, and returns the messages it carried.
func longStream(ctx context.Context, addr string) (int64, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	s, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(context.WithoutCancel(ctx))
	if err != nil {
		return 0, fmt.Errorf("open the long-running stream: %w", err)
	}
	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1024}}}
	var n int64
	for ctx.Err() == nil {
		if err := s.Send(req); err != nil {
			return n, fmt.Errorf("send on the long-running stream: %w", err)
		}
		if _, err := s.Recv(); err != nil {
			return n, fmt.Errorf("receive on the long-running stream: %w", err)
		}
		n++
	}
	if err := s.CloseSend(); err != nil {
		return n, err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("long-running stream end: %v, want EOF", err)
	}
	return n, nil
}

// report renders r as text.
func (r *result) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "episodes:")
	for k := range numKinds {
		fmt.Fprintf(&b, " %s %d;", k, r.Episodes[k])
	}
	fmt.Fprintf(&b, " long-running stream: %d messages\n", r.Streamed)
	if r.Traced {
		fmt.Fprintf(&b, "traced: %d spans reached the OTLP receiver (the last batch may still be on its way)\n", r.Spans)
	}
	b.WriteString("\n")
	keys := map[eventKey]bool{}
	for k := range r.Caused {
		keys[k] = true
	}
	for k := range r.Received {
		keys[k] = true
	}
	sorted := make([]eventKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b eventKey) int {
		if a.Reason != b.Reason {
			return int(a.Reason) - int(b.Reason)
		}
		return int(a.Scope) - int(b.Scope)
	})
	fmt.Fprintf(&b, "%-34s %8s %8s\n", "EVENT", "CAUSED", "RECEIVED")
	for _, k := range sorted {
		fmt.Fprintf(&b, "%-34s %8d %8d\n", k, r.Caused[k], r.Received[k])
	}
	g := func(n int) string {
		if n < 0 {
			return "not exported"
		}
		return strconv.Itoa(n)
	}
	fmt.Fprintf(&b, "\nsidecar   %10s %10s\n", "baseline", "end")
	fmt.Fprintf(&b, "fds       %10d %10d\n", r.Base.FDs, r.End.FDs)
	fmt.Fprintf(&b, "threads   %10d %10d\n", r.Base.Threads, r.End.Threads)
	fmt.Fprintf(&b, "RSS KiB   %10d %10d\n", r.Base.RSSBytes>>10, r.End.RSSBytes>>10)
	fmt.Fprintf(&b, "goroutines %9s %10s\n", g(r.Goroutine[0]), g(r.Goroutine[1]))
	if len(r.NewFDs) > 0 {
		fmt.Fprintf(&b, "descriptors opened since baseline: %s\n", strings.Join(r.NewFDs, ", "))
	}
	return b.String()
}
