//go:build linux

package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/event"
)

// ChildEnv makes a harness binary (bench/compare, bench/soak or a test
// binary) act as a client process: it opens a stream to the address in the
// variable, prints "ready" and blocks until killed. RunChildIfAsked does it.
const ChildEnv = "HANGUP_BENCH_CHILD"

// eventTimeout bounds the wait for one DisconnectNotify event.
const eventTimeout = 10 * time.Second

// RunChildIfAsked turns the process into the killable client when ChildEnv
// is set, and never returns then. Call it first in main and TestMain.
func RunChildIfAsked() {
	addr := os.Getenv(ChildEnv)
	if addr == "" {
		return
	}
	c, err := h2raw.Dial(addr)
	if err == nil {
		err = OpenStreams(c, 1, 30*time.Second)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child client: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("ready", c.Conn.LocalAddr())
	buf := make([]byte, 1)
	_, _ = c.Conn.Read(buf) // until killed
	os.Exit(0)
}

// NotifyResult is hangup's detection and delivery speed.
type NotifyResult struct {
	RSTp50, RSTp99   time.Duration // RST_STREAM sent → Notify received by the app
	KillP50, KillP99 time.Duration // client process SIGKILLed → Notify received
	// The part of each after the sidecar detected the disconnect: the
	// rest is the disconnect reaching it (for a killed client, mostly the
	// kernel tearing the process down and closing its socket).
	RSTDeliveryP50, RSTDeliveryP99   time.Duration
	KillDeliveryP50, KillDeliveryP99 time.Duration
	RSTSamples                       int
	KillSamples                      int
	Burst                            int     // stream disconnects in the burst
	BurstConns                       int     // connections they were on
	BurstEventsPerS                  float64 // events delivered per second during the burst
	BurstSeconds                     float64
}

// waitStreamEvent returns the next stream-scope event about the client at
// peer (its local address) as the app received it, dropping any other
// event (late ones from earlier scenarios, connection-scope ones).
func waitStreamEvent(recv *demoapp.Receiver, peer string) (demoapp.Received, error) {
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case r := <-recv.Events:
			if r.Event.Scope == event.ScopeStream && r.Event.PeerAddress == peer {
				return r, nil
			}
		case <-timer.C:
			return demoapp.Received{}, fmt.Errorf("no stream event within %s", eventTimeout)
		}
	}
}

// latencies are the samples of one kind of disconnect: from the
// disconnect to the app's receipt, and the part of it after the sidecar
// detected the disconnect (the event's detected_at, on the same clock).
type latencies struct{ total, delivery []time.Duration }

func (l *latencies) add(start time.Time, r demoapp.Received) {
	l.total = append(l.total, r.At.Sub(start))
	l.delivery = append(l.delivery, r.At.Sub(r.Event.DetectedAt))
}

// percentiles returns the sample count and the p50 and p99 of total and
// of delivery.
func (l *latencies) percentiles() (n int, p50, p99, delivery50, delivery99 time.Duration) {
	if len(l.total) == 0 {
		return 0, 0, 0, 0, 0
	}
	return len(l.total), pct(l.total, 0.5), pct(l.total, 0.99), pct(l.delivery, 0.5), pct(l.delivery, 0.99)
}

// drain empties recv without waiting.
func drain(recv *demoapp.Receiver) {
	for {
		select {
		case <-recv.Events:
		default:
			return
		}
	}
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// measureNotify measures hangup (p) with its Notify receiver recv: rst
// RST_STREAM disconnects, kills killed client processes, and one burst of
// burstConns×burstStreams streams whose connections are reset at once.
func measureNotify(ctx context.Context, p *Peer, recv *demoapp.Receiver, rst, kills, burstConns, burstStreams int) (NotifyResult, error) {
	var r NotifyResult
	drain(recv)
	var rstLat latencies
	for i := range rst {
		c, err := h2raw.Dial(p.Addr)
		if err == nil {
			err = OpenStreams(c, 1, 10*time.Second)
		}
		if err != nil {
			return r, fmt.Errorf("RST_STREAM sample %d: %w", i, err)
		}
		start := time.Now()
		_ = c.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
		got, err := waitStreamEvent(recv, c.Conn.LocalAddr().String())
		c.Close()
		if err != nil {
			return r, fmt.Errorf("RST_STREAM sample %d: %w", i, err)
		}
		rstLat.add(start, got)
	}
	r.RSTSamples, r.RSTp50, r.RSTp99, r.RSTDeliveryP50, r.RSTDeliveryP99 = rstLat.percentiles()
	self, err := os.Executable()
	if err != nil {
		return r, fmt.Errorf("find the harness binary to run a client process: %w", err)
	}
	var killLat latencies
	for i := range kills {
		drain(recv)
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), ChildEnv+"="+p.Addr)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return r, err
		}
		if err := cmd.Start(); err != nil {
			return r, fmt.Errorf("start client process: %w", err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		child, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return r, fmt.Errorf("killed-client sample %d: the client process said %q, want ready", i, line)
		}
		start := time.Now()
		_ = cmd.Process.Kill()
		got, err := waitStreamEvent(recv, child)
		_ = cmd.Wait()
		if err != nil {
			return r, fmt.Errorf("killed-client sample %d: %w", i, err)
		}
		killLat.add(start, got)
	}
	r.KillSamples, r.KillP50, r.KillP99, r.KillDeliveryP50, r.KillDeliveryP99 = killLat.percentiles()
	if burstConns == 0 {
		return r, nil
	}
	drain(recv)
	clients := make([]*h2raw.Client, 0, burstConns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range burstConns {
		c, err := h2raw.Dial(p.Addr)
		if err == nil {
			clients = append(clients, c)
			err = OpenStreams(c, burstStreams, 30*time.Second)
		}
		if err != nil {
			return r, fmt.Errorf("burst connection %d: %w", i, err)
		}
	}
	mine := map[string]bool{}
	for _, c := range clients {
		mine[c.Conn.LocalAddr().String()] = true
	}
	start := time.Now()
	for _, c := range clients {
		_ = c.Reset()
	}
	want := burstConns * burstStreams
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	for got := 0; got < want; {
		select {
		case ev := <-recv.Events:
			if ev.Event.Scope == event.ScopeStream && mine[ev.Event.PeerAddress] {
				got++
			}
		case <-timer.C:
			return r, fmt.Errorf("burst: %d of %d stream events after 60s", got, want)
		}
	}
	r.Burst, r.BurstConns = want, burstConns
	r.BurstSeconds = time.Since(start).Seconds()
	r.BurstEventsPerS = float64(want) / r.BurstSeconds
	return r, nil
}
