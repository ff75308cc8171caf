package proxy

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fakeClock is an injected clock for tests of timing rules.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// TestRapidResetBudget drives the Rapid Reset budget on an injected clock:
// resets before the app answered spend it, it refills at
// MaxPrematureResets per second, and resets after the app's response
// HEADERS or after a second cost nothing. It fails on the old rule, which
// counted every reset within a second of opening and never refilled.
func TestRapidResetBudget(t *testing.T) {
	const limit = 10
	type step struct {
		advance  time.Duration
		resets   int  // streams opened and reset
		answered bool // the app answered each before the reset
		lifetime time.Duration
		wantErr  bool // the last reset overdraws the budget
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a burst within the budget", []step{{resets: limit}}},
		{"one more than the budget", []step{{resets: limit + 1, wantErr: true}}},
		{"answered streams cost nothing", []step{{resets: 10 * limit, answered: true}}},
		{"streams older than a second cost nothing", []step{{resets: 10 * limit, lifetime: prematureResetWindow}}},
		{"the budget refills at the limit per second", []step{
			{resets: limit}, {advance: 500 * time.Millisecond, resets: limit / 2},
			{advance: time.Second, resets: limit}, {resets: 1, wantErr: true}}},
		{"a steady rate at the limit is allowed", []step{
			{resets: 1}, {advance: time.Second / limit, resets: 1}, {advance: time.Second / limit, resets: 1},
			{resets: limit - 1}, {advance: time.Second / limit, resets: 1}, {resets: 1, wantErr: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1_000_000, 0)}
			tc := newTestConnWith(t, func(c *Config) {
				c.Limits.MaxPrematureResets = limit
				c.Now = clock.Now
			})
			var cb, ab bytes.Buffer
			cenc, aenc := hpack.NewEncoder(&cb), hpack.NewEncoder(&ab)
			id := uint32(1)
			for i, st := range tt.steps {
				clock.advance(st.advance)
				for r := range st.resets {
					err := feed(t, tc.up, frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
						_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: request(cenc, &cb, "/a.S/M"), EndHeaders: true})
					}))
					if err != nil {
						t.Fatalf("step %d: open stream %d: %v", i, id, err)
					}
					if st.answered {
						ab.Reset()
						_ = aenc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
						if err := feed(t, tc.down, frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
							_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: bytes.Clone(ab.Bytes()), EndHeaders: true})
						})); err != nil {
							t.Fatalf("step %d: answer stream %d: %v", i, id, err)
						}
					}
					clock.advance(st.lifetime)
					err = feed(t, tc.up, frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
						_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
					}))
					id += 2
					last := r == st.resets-1
					var ce connError
					switch {
					case last && st.wantErr:
						if !asConnError(err, &ce) || ce.Kind != AbuseRapidReset || ce.Code != http2.ErrCodeEnhanceYourCalm {
							t.Fatalf("step %d: reset %d: err = %v, want the rapid_reset GOAWAY", i, r, err)
						}
					case err != nil:
						t.Fatalf("step %d: reset %d of %d: %v", i, r+1, st.resets, err)
					}
				}
			}
		})
	}
}
