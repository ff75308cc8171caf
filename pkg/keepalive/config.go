package keepalive

import (
	"errors"
	"fmt"
	"time"
)

// Config is the keepalive, connection-age and ping-enforcement policy of one
// client connection. The fields mean what grpc-go's keepalive.ServerParameters
// and keepalive.EnforcementPolicy mean (gRFC A8, A9). The flag-style key of
// each field (used in errors, flags and annotations) is given in brackets.
type Config struct {
	// Time [keepalive-time]: after this long without reading any frame from
	// the client the relay sends a PING of its own.
	// Default 30s, minimum 1s.
	Time time.Duration

	// Timeout [keepalive-timeout]: when neither the ACK of that PING nor any
	// other frame has been read this long after it was sent, the client is
	// dead (KEEPALIVE_TIMEOUT). Also bounds how long the first phase of a
	// graceful GOAWAY waits for its PING ACK.
	// Default 10s, minimum 1s.
	Timeout time.Duration

	// MinTime [keepalive-min-time]: the client must not PING more often than
	// this; each PING that comes sooner is a strike.
	// Default 5m, minimum 1s.
	MinTime time.Duration

	// PermitWithoutStream [keepalive-permit-without-stream]: when false, a
	// client PING while no stream is open is a strike too (unless the
	// previous one was at least 2 hours earlier, as in grpc-go).
	// Default false.
	PermitWithoutStream bool

	// MaxConnectionIdle [max-connection-idle]: a connection with no open
	// stream for this long gets a graceful GOAWAY "max_idle".
	// Default 0 (off); when on, minimum 1s.
	MaxConnectionIdle time.Duration

	// MaxConnectionAge [max-connection-age]: a connection older than this,
	// ±10% random jitter, gets a graceful GOAWAY "max_age".
	// Default 0 (off); when on, minimum 1s.
	MaxConnectionAge time.Duration

	// MaxConnectionAgeGrace [max-connection-age-grace]: after the max-age
	// GOAWAY, streams still open this much later are cut off and the
	// connection is closed.
	// Default 0 (infinite: wait for the streams); when on, minimum 1s.
	MaxConnectionAgeGrace time.Duration

	// RTTInterval [rtt-interval]: when on, a PING of the relay's own goes
	// to the client this long after the previous one, only to measure the
	// round-trip time, and never while one of ours is unanswered. It does
	// not change when a client counts as dead. No common client stack
	// limits how often a server may PING it (see the README, "Round-trip
	// time"); the minimum bounds the relay's own cost per connection.
	// Default 0 (off: the PING after the preface and the keepalive PINGs
	// are the samples); when on, minimum 1s.
	RTTInterval time.Duration
}

// DefaultConfig returns the defaults listed in defaults.go.
func DefaultConfig() Config {
	return Config{
		Time:                  DefaultTime,
		Timeout:               DefaultTimeout,
		MinTime:               DefaultMinTime,
		PermitWithoutStream:   DefaultPermitWithoutStream,
		MaxConnectionIdle:     DefaultMaxConnectionIdle,
		MaxConnectionAge:      DefaultMaxConnectionAge,
		MaxConnectionAgeGrace: DefaultMaxConnectionAgeGrace,
		RTTInterval:           DefaultRTTInterval,
	}
}

// Validate reports every field that is out of range, each error naming the
// field's flag-style key, the bad value and what is expected.
func (c Config) Validate() error {
	var errs []error
	required := func(key string, d time.Duration) {
		switch {
		case d <= 0:
			errs = append(errs, fmt.Errorf("%s must be > 0 (minimum %s), got %s", key, MinDuration, d))
		case d < MinDuration:
			errs = append(errs, fmt.Errorf("%s %s is below the minimum %s", key, d, MinDuration))
		}
	}
	optional := func(key, zero string, d time.Duration) {
		switch {
		case d < 0:
			errs = append(errs, fmt.Errorf("%s %s must not be negative (0 means %s, else minimum %s)", key, d, zero, MinDuration))
		case d > 0 && d < MinDuration:
			errs = append(errs, fmt.Errorf("%s %s is below the minimum %s (0 means %s)", key, d, MinDuration, zero))
		}
	}
	required("keepalive-time", c.Time)
	required("keepalive-timeout", c.Timeout)
	required("keepalive-min-time", c.MinTime)
	optional("max-connection-idle", "off", c.MaxConnectionIdle)
	optional("max-connection-age", "off", c.MaxConnectionAge)
	optional("max-connection-age-grace", "infinite", c.MaxConnectionAgeGrace)
	optional("rtt-interval", "off", c.RTTInterval)
	return errors.Join(errs...)
}

// TCPUserTimeout is the value for the socket's TCP_USER_TIMEOUT: a write that
// stays unacknowledged by the peer's TCP for longer than a keepalive round
// (Time + Timeout) fails, so a stuck writer notices a dead peer no later than
// the keepalive does.
func (c Config) TCPUserTimeout() time.Duration {
	return c.Time + c.Timeout
}

// normalized returns c with out-of-range values replaced by the nearest
// accepted one, so that a Policy built from an unvalidated Config can neither
// spin (a zero Time) nor panic.
func (c Config) normalized() Config {
	atLeastMin := func(d time.Duration) time.Duration { return max(d, MinDuration) }
	offOrMin := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0
		}
		return max(d, MinDuration)
	}
	c.Time = atLeastMin(c.Time)
	c.Timeout = atLeastMin(c.Timeout)
	c.MinTime = atLeastMin(c.MinTime)
	c.MaxConnectionIdle = offOrMin(c.MaxConnectionIdle)
	c.MaxConnectionAge = offOrMin(c.MaxConnectionAge)
	c.MaxConnectionAgeGrace = offOrMin(c.MaxConnectionAgeGrace)
	c.RTTInterval = offOrMin(c.RTTInterval)
	return c
}
