//go:build linux

package harness

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeClock is a clock whose after moves it on at once.
func fakeClock() clock {
	t := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	return clock{
		now: func() time.Time { return t },
		after: func(d time.Duration) <-chan time.Time {
			t = t.Add(d)
			c := make(chan time.Time, 1)
			c <- t
			return c
		},
	}
}

func TestSettled(t *testing.T) {
	const mib = 1 << 20
	steady := int(settleWindow / settleEvery) // readings after the first that a steady run needs
	repeat := func(v int64, n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name      string
		rss       []int64 // one per reading; the last repeats
		wantRSS   int64
		wantOK    bool
		wantReads int
	}{
		{name: "steady from the start", rss: []int64{20 * mib}, wantRSS: 20 * mib, wantOK: true, wantReads: steady + 1},
		{
			name:    "small moves within the tolerance",
			rss:     append([]int64{20 * mib, 20*mib + settleTolerance/2, 20 * mib}, 20*mib-settleTolerance/2),
			wantRSS: 20*mib - settleTolerance/2, wantOK: true, wantReads: steady + 1,
		},
		{
			name:    "a drop restarts the window and is what is read",
			rss:     append(repeat(30*mib, steady), 22*mib),
			wantRSS: 22 * mib, wantOK: true, wantReads: 2*steady + 1,
		},
		{
			name:    "a large process gets a proportional band",
			rss:     []int64{400 * mib, 400*mib + 2*mib - 1, 400 * mib},
			wantRSS: 400 * mib, wantOK: true, wantReads: steady + 1,
		},
		{
			name: "still moving at settleMax: read as it is",
			rss: func() []int64 {
				out := make([]int64, int(settleMax/settleEvery)+2)
				for i := range out {
					out[i] = int64(20*mib + i*mib)
				}
				return out
			}(),
			wantRSS: int64(20*mib + int(settleMax/settleEvery)*mib), wantOK: false, wantReads: int(settleMax/settleEvery) + 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := 0
			read := func() (ProcUsage, error) {
				v := tt.rss[min(reads, len(tt.rss)-1)]
				reads++
				return ProcUsage{RSSBytes: v}, nil
			}
			u, ok, err := settled(context.Background(), fakeClock(), read)
			if err != nil {
				t.Fatal(err)
			}
			if u.RSSBytes != tt.wantRSS || ok != tt.wantOK || reads != tt.wantReads {
				t.Errorf("settled = %d bytes, ok %v after %d readings; want %d, %v after %d",
					u.RSSBytes, ok, reads, tt.wantRSS, tt.wantOK, tt.wantReads)
			}
		})
	}
}

func TestSettledStops(t *testing.T) {
	t.Run("a failed reading", func(t *testing.T) {
		boom := errors.New("no such process")
		_, _, err := settled(context.Background(), fakeClock(), func() (ProcUsage, error) { return ProcUsage{}, boom })
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want %v", err, boom)
		}
	})
	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		clk := fakeClock()
		clk.after = func(time.Duration) <-chan time.Time { return nil } // never fires
		_, _, err := settled(ctx, clk, func() (ProcUsage, error) { return ProcUsage{RSSBytes: 1}, nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}
