package keepalive_test

import (
	"fmt"
	"time"

	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// The relay executes the actions of every call in order and re-arms its one
// timer to Deadline; here time is just values.
func Example() {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := keepalive.DefaultConfig()
	cfg.MaxConnectionAge = 10 * time.Minute
	cfg.MaxConnectionAgeGrace = time.Minute
	p := keepalive.New(cfg, start, func() float64 { return 0.5 }) // no jitter

	var drainPing [8]byte
	execute := func(now time.Time, acts []keepalive.Action) {
		for _, a := range acts {
			fmt.Printf("%-5s %-14s %q %s\n", now.Sub(start), a.Kind, a.Debug, a.Reason)
			if a.Kind == keepalive.GoAwayGraceful {
				drainPing = a.Ping
			}
		}
	}

	p.StreamOpened(start)
	now := p.Deadline() // 30s: the first keepalive ping is due
	execute(now, p.Tick(now))
	now = now.Add(20 * time.Millisecond)
	p.FrameRead(now) // the ACK arrives; the relay consumes it
	execute(now, p.PingAckReceived(now, [8]byte{'h', 'g', 'u', 'p', 0, 0, 0, 1}))

	now = start.Add(10 * time.Minute) // max age, with pings answered meanwhile
	for p.Deadline().Before(now) {
		d := p.Deadline()
		p.Tick(d)
		p.FrameRead(d)
	}
	execute(now, p.Tick(now))
	execute(now, p.PingAckReceived(now, drainPing))
	now = p.Deadline() // the grace ends with the stream still open
	for ; ; now = p.Deadline() {
		acts := p.Tick(now)
		if len(acts) > 0 && acts[0].Kind != keepalive.SendPing {
			execute(now, acts)
			break
		}
		p.FrameRead(now)
	}
	fmt.Println("deadline zero:", p.Deadline().IsZero())
	// Output:
	// 30s   SendPing       "" UNSPECIFIED
	// 10m0s GoAwayGraceful "max_age" MAX_AGE
	// 10m0s GoAwayFinal    "max_age" MAX_AGE
	// 11m0s Close          "max_age" MAX_AGE
	// deadline zero: true
}
