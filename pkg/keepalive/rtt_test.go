package keepalive

import (
	"slices"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

func TestRTTEstimator(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name    string
		samples []time.Duration
		want    event.RTT
	}{
		{"no sample is unknown", nil, event.RTT{}},
		// RFC 6298 (2.2): SRTT = R, RTTVAR = R/2.
		{"first sample", []time.Duration{100 * ms}, event.RTT{Last: 100 * ms, Min: 100 * ms, Smoothed: 100 * ms, Var: 50 * ms, Samples: 1}},
		// (2.3): RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5.
		{"second sample", []time.Duration{100 * ms, 200 * ms},
			event.RTT{Last: 200 * ms, Min: 100 * ms, Smoothed: 112500 * us, Var: 62500 * us, Samples: 2}},
		// RTTVAR = 3/4*62.5 + 1/4*|112.5-50| = 62.5; SRTT = 7/8*112.5 + 1/8*50 = 104.6875.
		{"a smaller sample lowers the minimum", []time.Duration{100 * ms, 200 * ms, 50 * ms},
			event.RTT{Last: 50 * ms, Min: 50 * ms, Smoothed: 104687500 * time.Nanosecond, Var: 62500 * us, Samples: 3}},
		{"a steady path converges", []time.Duration{20 * ms, 20 * ms, 20 * ms, 20 * ms},
			event.RTT{Last: 20 * ms, Min: 20 * ms, Smoothed: 20 * ms, Var: 10 * ms * 27 / 64, Samples: 4}},
		{"a negative sample counts as zero", []time.Duration{-5 * ms},
			event.RTT{Samples: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e RTTEstimator
			for _, s := range tt.samples {
				e.Observe(s)
			}
			got := e.RTT()
			if got != tt.want {
				t.Errorf("after %v: RTT() = %+v, want %+v", tt.samples, got, tt.want)
			}
			if got.Known() != (len(tt.samples) > 0) {
				t.Errorf("Known() = %v after %d samples", got.Known(), len(tt.samples))
			}
		})
	}
}

// rttStep is one call on a Policy at t0+at; want lists the kinds returned;
// samples and last, when samples > 0, are the RTT expected after it.
type rttStep struct {
	at      time.Duration
	call    string // "preface", "tick", "ack" (the last PING sent), "ackDrain", "frame", "ping" (the client's), "drain"
	want    []Kind
	samples uint32
	last    time.Duration
}

func TestPolicyTimesItsOwnPings(t *testing.T) {
	measure := DefaultConfig()
	measure.RTTInterval = sec
	tests := []struct {
		name  string
		cfg   Config
		steps []rttStep
	}{
		{"the PING after the preface is timed", DefaultConfig(), []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 21 * ms, call: "ack", samples: 1, last: 20 * ms},
			{at: 22 * ms, call: "preface"}, // the app's later SETTINGS: no more
		}},
		{"a keepalive PING is timed", DefaultConfig(), []rttStep{
			{at: 30 * sec, call: "tick", want: k(SendPing)},
			{at: 30*sec + 45*ms, call: "ack", samples: 1, last: 45 * ms},
		}},
		{"a client's own PING is not ours to time", DefaultConfig(), []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 5 * ms, call: "ping"},
			{at: 6 * ms, call: "frame"},
			{at: 31 * ms, call: "ack", samples: 1, last: 30 * ms},
		}},
		{"rtt-interval measures every interval after the last ACK'd PING", measure, []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 21 * ms, call: "ack", samples: 1, last: 20 * ms},
			{at: 1*sec + 0*ms, call: "tick"}, // due at 1.001s
			{at: 1*sec + 1*ms, call: "tick", want: k(SendRTTPing)},
			{at: 1*sec + 31*ms, call: "ack", samples: 2, last: 30 * ms},
			{at: 2*sec + 1*ms, call: "tick", want: k(SendRTTPing)},
		}},
		{"no measurement PING while one of ours is unanswered; keepalive goes on as before", measure, []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 2 * sec, call: "tick"},
			{at: 10 * sec, call: "frame"}, // alive, but the PING is still unanswered
			{at: 20 * sec, call: "tick"},
			{at: 40 * sec, call: "tick", want: k(SendPing)},
			{at: 49*sec + 999*ms, call: "tick"},
			{at: 50 * sec, call: "tick", want: k(CloseDead)},
		}},
		{"a skipped PING is not waited for: the next one is timed", DefaultConfig(), []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 30 * sec, call: "tick", want: k(SendPing)},
			{at: 30*sec + 5*ms, call: "skip"},
			{at: 30*sec + 5*ms, call: "ack", samples: 1, last: 5 * ms},
		}},
		{"a measurement PING never starts the keepalive timeout", measure, []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 10*sec + 1*ms, call: "tick"}, // a keepalive PING would be dead here
			{at: 15 * sec, call: "frame"},
			{at: 30 * sec, call: "frame"},
			{at: 44 * sec, call: "tick"},
			{at: 44 * sec, call: "frame"},
			{at: 59 * sec, call: "tick"},
		}},
		{"the drain's PING follows its GOAWAY even with one unanswered, and is the one timed", DefaultConfig(), []rttStep{
			{at: 1 * ms, call: "preface", want: k(SendRTTPing)},
			{at: 2 * ms, call: "drain", want: k(GoAwayGraceful)},
			{at: 11 * ms, call: "ack"},
			{at: 12 * ms, call: "ackDrain", want: k(GoAwayFinal, Close), samples: 1, last: 10 * ms},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(tt.cfg, t0, half)
			var sent [][8]byte // our PINGs not yet acknowledged, oldest first
			var drain [8]byte
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				var acts []Action
				switch s.call {
				case "preface":
					acts = p.PrefaceSent(now)
				case "tick":
					acts = p.Tick(now)
				case "ack": // a peer answers in order
					if len(sent) == 0 {
						t.Fatalf("step %d: ack with no PING sent", i)
					}
					acts = p.PingAckReceived(now, sent[0])
					sent = sent[1:]
				case "skip": // the oldest PING is never answered
					sent = sent[1:]
				case "ackDrain":
					acts = p.PingAckReceived(now, drain)
				case "frame":
					p.FrameRead(now)
				case "ping":
					acts = p.PingReceived(now)
				case "drain":
					acts = p.Drain(now, 0)
				default:
					t.Fatalf("step %d: unknown call %q", i, s.call)
				}
				var kinds []Kind
				for _, a := range acts {
					kinds = append(kinds, a.Kind)
					switch a.Kind {
					case SendPing, SendRTTPing:
						sent = append(sent, a.Ping)
					case GoAwayGraceful:
						drain = a.Ping
					}
				}
				if !slices.Equal(kinds, s.want) {
					t.Fatalf("step %d (%s at %s): got %v, want %v", i, s.call, s.at, kinds, s.want)
				}
				if s.samples > 0 {
					if r := p.RTT(); r.Samples != s.samples || r.Last != s.last {
						t.Fatalf("step %d (%s at %s): RTT %+v, want %d samples, last %s", i, s.call, s.at, r, s.samples, s.last)
					}
				}
			}
		})
	}
}
