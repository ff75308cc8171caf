//go:build linux

package harness

import (
	"context"
	"time"
)

// How the memory scenario reads a steady RSS: the same rule for every
// peer. A Go process returns garbage and free pages to the OS some time
// after the work that made them (its collector and scavenger run later,
// and hangup gives its spare heap back once idle), while a C proxy frees
// into malloc at once; a reading taken the moment the last connection is
// up would catch the Go peers in the middle of that.
const (
	// settleEvery is how often RSS is read while waiting.
	settleEvery = 250 * time.Millisecond
	// settleWindow is how long RSS must stay within settleTolerance.
	settleWindow = 3 * time.Second
	// settleMax bounds the wait; a peer still moving then is read as it is
	// and the step is reported as unsettled.
	settleMax = 15 * time.Second
	// settleTolerance is the least band RSS may move in and count as
	// steady; settleFraction of RSS widens it for large processes.
	settleTolerance = 128 << 10
	settleFraction  = 200 // 0.5%
)

// clock is settle's time: real in the harness, fake in its tests.
type clock struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

var realClock = clock{now: time.Now, after: time.After}

// settled reads usage every settleEvery until its RSS has stayed within
// max(settleTolerance, RSS/settleFraction) for settleWindow, and returns
// the last reading; ok is false when settleMax passed first.
func settled(ctx context.Context, clk clock, read func() (ProcUsage, error)) (u ProcUsage, ok bool, err error) {
	start := clk.now()
	var since time.Time // start of the current steady run
	var lo, hi int64    // its RSS band
	for {
		if u, err = read(); err != nil {
			return u, false, err
		}
		t := clk.now()
		rss := u.RSSBytes
		nlo, nhi := min(lo, rss), max(hi, rss)
		if since.IsZero() || nhi-nlo > max(settleTolerance, rss/settleFraction) {
			since, nlo, nhi = t, rss, rss
		}
		lo, hi = nlo, nhi
		switch {
		case t.Sub(since) >= settleWindow:
			return u, true, nil
		case t.Sub(start) >= settleMax:
			return u, false, nil
		}
		select {
		case <-ctx.Done():
			return u, false, ctx.Err()
		case <-clk.after(settleEvery):
		}
	}
}
