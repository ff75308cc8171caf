package keepalive

import (
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

// RTTEstimator keeps the round-trip time of one connection from the samples
// it is given: the last, the smallest, and the smoothed value and variation
// of RFC 6298 section 2 (alpha 1/8, beta 1/4). It never reads the clock:
// the Policy times its own PINGs with the times passed to it. The zero
// value has no sample.
type RTTEstimator struct {
	r event.RTT
}

// Observe adds one sample. A negative sample (a clock that went backwards)
// counts as zero.
func (e *RTTEstimator) Observe(sample time.Duration) {
	sample = max(sample, 0)
	r := &e.r
	if r.Samples == 0 {
		// RFC 6298 (2.2): SRTT <- R, RTTVAR <- R/2.
		r.Min, r.Smoothed, r.Var = sample, sample, sample/2
	} else {
		// RFC 6298 (2.3), RTTVAR first, from the SRTT before this sample:
		// RTTVAR <- (1-beta)*RTTVAR + beta*|SRTT-R'|,
		// SRTT <- (1-alpha)*SRTT + alpha*R'.
		diff := r.Smoothed - sample
		if diff < 0 {
			diff = -diff
		}
		r.Var = (3*r.Var + diff) / 4
		r.Smoothed = (7*r.Smoothed + sample) / 8
		r.Min = min(r.Min, sample)
	}
	r.Last = sample
	if r.Samples < ^uint32(0) {
		r.Samples++
	}
}

// RTT returns the estimate so far; RTT().Known() is false before the first
// sample.
func (e *RTTEstimator) RTT() event.RTT { return e.r }
