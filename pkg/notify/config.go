package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// DefaultAddr is where the app's DisconnectNotify server is expected:
// loopback, next to the app in the same Pod, on the port pkg/ports keeps
// clear of the meshes' ports.
var DefaultAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.Notify))

// Defaults for Config, all in one place. A zero field in Config means its
// default, except Addr where empty means "disabled".
const (
	// DefaultTimeout bounds one Notify call. Loopback calls take well under
	// a millisecond; 2s leaves room for a stalled app without holding the
	// queue back for long.
	DefaultTimeout = 2 * time.Second
	// DefaultQueueSize is how many events wait at most: a few MB when full.
	DefaultQueueSize = 10000
	// DefaultBatchMax is the largest batch in one Notify call.
	DefaultBatchMax = 100
	// DefaultBatchDelay is 0: no batch waits for more events. Events are
	// sent at once while no call is in flight and batched only behind one
	// that is, which costs nothing when events are rare and fills batches
	// by itself in a burst (see Notifier.nextBatch).
	DefaultBatchDelay = time.Duration(0)
	// DefaultRetryMin is the first retry delay after a failed call.
	DefaultRetryMin = 25 * time.Millisecond
	// DefaultRetryMax caps the retry delay (and grpc's reconnect delay):
	// events held back while the app restarts reach it within about 2s of
	// it listening again.
	DefaultRetryMax = time.Second
	// DefaultUnimplementedRetry is the retry delay while the app answers
	// UNIMPLEMENTED: it is up but does not (yet) serve DisconnectNotify,
	// which is a deployment mistake more than an outage.
	DefaultUnimplementedRetry = 30 * time.Second
)

// Smallest accepted values: below them a setting only burns CPU or makes
// every call time out.
const (
	minTimeout  = time.Millisecond
	minRetryMin = time.Millisecond
)

// Config configures a Notifier. The zero value of every field except Addr
// means its default; DefaultConfig returns a Config with all of them set.
type Config struct {
	// Addr is the app's DisconnectNotify server: "host:port" or
	// "unix:///absolute/path". Empty disables notification (New returns a
	// Notifier that discards events). Flag: --notify-addr. Default
	// DefaultAddr (in DefaultConfig only).
	Addr string

	// Timeout bounds one Notify call. Default 2s, minimum 1ms.
	// Flag: --notify-timeout.
	Timeout time.Duration

	// QueueSize is the most events held for delivery, including the batch in
	// flight. When it is full the oldest event is dropped for each new one.
	// Default 10000, minimum 1. Flag: --notify-queue-size.
	QueueSize int

	// BatchMax is the most events in one Notify call. Default 100, minimum 1.
	// A call also carries at most 1 MiB of encoded events (MaxCallBytes),
	// less once the app refused one as too large. Flag: --notify-batch-max.
	BatchMax int

	// BatchDelay, when positive, holds every batch that is not full this
	// long for more events, trading latency for fewer calls; a retry does
	// not wait. Default 0: an event is sent at once when no call is in
	// flight, and events that arrive during a call go together in the next
	// one as soon as it returns. Flag: --notify-batch-delay.
	BatchDelay time.Duration

	// Headers is the allow-list of request header names the relay copies
	// into events (case-insensitive; pseudo-headers are not accepted). The
	// Notifier does not filter: the relay asks HeaderAllowList. Default
	// none. Flag: --notify-headers.
	Headers []string

	// RetryMin is the first delay after a failed call; it doubles with each
	// further failure up to RetryMax, with jitter. Default 25ms, minimum 1ms.
	// Flag: --notify-retry-min.
	RetryMin time.Duration

	// RetryMax caps the retry delay and grpc's own reconnect delay. Default
	// 1s, minimum RetryMin. Flag: --notify-retry-max.
	RetryMax time.Duration

	// UnimplementedRetry is the retry delay while the app answers
	// UNIMPLEMENTED. Default 30s, minimum 1ms.
	// Flag: --notify-unimplemented-retry.
	UnimplementedRetry time.Duration

	// Logger receives delivery problems and drops. Default: discard.
	Logger *slog.Logger

	// OnDelivered, when set, is called once for every acknowledged event with
	// the number of calls that carried it and the time from Publish to the
	// acknowledgement. It runs on the delivery goroutine, never on the
	// caller of Publish, and must return quickly: delivery waits for it.
	OnDelivered func(ev Event, attempts int, latency time.Duration)
}

// DefaultConfig returns a Config with every default set, Addr included.
func DefaultConfig() Config {
	return Config{
		Addr:               DefaultAddr,
		Timeout:            DefaultTimeout,
		QueueSize:          DefaultQueueSize,
		BatchMax:           DefaultBatchMax,
		BatchDelay:         DefaultBatchDelay,
		RetryMin:           DefaultRetryMin,
		RetryMax:           DefaultRetryMax,
		UnimplementedRetry: DefaultUnimplementedRetry,
	}
}

// withDefaults returns c with its zero fields (except Addr) set to defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.BatchMax == 0 {
		c.BatchMax = d.BatchMax
	}
	if c.BatchDelay == 0 {
		c.BatchDelay = d.BatchDelay
	}
	if c.RetryMin == 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.UnimplementedRetry == 0 {
		c.UnimplementedRetry = d.UnimplementedRetry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field, naming its flag. Zero fields are
// valid: they mean the default.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if err := CheckAddr(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("notify-addr %w", err))
		}
	}
	if c.Timeout != 0 && c.Timeout < minTimeout {
		errs = append(errs, fmt.Errorf("notify-timeout %s: must be at least %s", c.Timeout, minTimeout))
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("notify-queue-size %d: must be at least 1", c.QueueSize))
	}
	if c.BatchMax < 0 {
		errs = append(errs, fmt.Errorf("notify-batch-max %d: must be at least 1", c.BatchMax))
	}
	if c.BatchDelay < 0 {
		errs = append(errs, fmt.Errorf("notify-batch-delay %s: must not be negative", c.BatchDelay))
	}
	if c.RetryMin != 0 && c.RetryMin < minRetryMin {
		errs = append(errs, fmt.Errorf("notify-retry-min %s: must be at least %s", c.RetryMin, minRetryMin))
	}
	if c.RetryMax != 0 && c.RetryMax < max(c.RetryMin, minRetryMin) {
		errs = append(errs, fmt.Errorf("notify-retry-max %s: must be at least notify-retry-min (%s)", c.RetryMax, max(c.RetryMin, minRetryMin)))
	}
	if c.UnimplementedRetry != 0 && c.UnimplementedRetry < minRetryMin {
		errs = append(errs, fmt.Errorf("notify-unimplemented-retry %s: must be at least %s", c.UnimplementedRetry, minRetryMin))
	}
	for _, h := range c.Headers {
		if err := validateHeaderName(h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CheckAddr reports whether addr is a DisconnectNotify address this package
// can dial: "host:port" (a numeric port) or "unix:///absolute/path". The
// error names the address but no flag, for callers with their own flags.
func CheckAddr(addr string) error {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if !strings.HasPrefix(path, "/") || len(path) < 2 {
			return fmt.Errorf("%q: want unix:///absolute/path", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port or unix:///path: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q: host is empty; want host:port, e.g. %s", addr, DefaultAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q must be a number from 1 to 65535", addr, port)
	}
	return nil
}

func validateHeaderName(h string) error {
	if h == "" {
		return errors.New("notify-headers: empty header name")
	}
	if strings.HasPrefix(h, ":") {
		return fmt.Errorf("notify-headers %q: pseudo-headers are carried in their own fields (method, authority)", h)
	}
	for _, r := range h {
		// RFC 9110 section 5.6.2 token characters.
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return fmt.Errorf("notify-headers %q: not a valid header name", h)
		}
	}
	return nil
}

// HeaderAllowList returns the lower-cased set of Headers, for the relay to
// decide cheaply which request headers to copy into an Event.
func (c Config) HeaderAllowList() map[string]bool {
	m := make(map[string]bool, len(c.Headers))
	for _, h := range c.Headers {
		m[strings.ToLower(h)] = true
	}
	return m
}
