package proxy

import (
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// Abuse defences. Each ends the connection with GOAWAY (reason
// PROTOCOL_ERROR in the events); other connections are untouched. Floods
// of PINGs are the keepalive policy's (too_many_pings, PING_ABUSE), and
// CONTINUATION floods and oversized header lists are bounded by
// MaxHeaderListSize.

// prematureResetWindow is how soon after its HEADERS a client reset makes a
// stream "premature", as Envoy's premature_reset_min_stream_lifetime.
const prematureResetWindow = time.Second

// A reset costs the Rapid Reset budget only when it is premature and the
// app had not answered yet: that is what the attack does (open, reset at
// once, before the server has any answer, so that it works for nothing and
// the stream never counts against the concurrency limit). A client that
// takes the first answer and then cancels ("first response wins") costs the
// app nothing new, however many calls it makes.

// Limits are the abuse limits of one connection. Zero means the default.
type Limits struct {
	// MaxPrematureResets is the Rapid Reset budget (CVE-2023-44487): a
	// client may reset this many streams before the app answered them and
	// within a second of opening them, and the budget refills at this many
	// per second; a client that overdraws it loses the connection.
	// Default 100, minimum 1.
	MaxPrematureResets int
	// MaxEmptyFrames: this many DATA frames in a row with no payload and no
	// END_STREAM end the connection. Default 100, minimum 1.
	MaxEmptyFrames int
	// MaxSettingsPerSecond: more SETTINGS frames than this from a client in
	// one second end the connection. Default 100, minimum 1.
	MaxSettingsPerSecond int
}

// Defaults of Limits.
const (
	DefaultMaxPrematureResets   = 100
	DefaultMaxEmptyFrames       = 100
	DefaultMaxSettingsPerSecond = 100
)

func (l Limits) withDefaults() Limits {
	if l.MaxPrematureResets <= 0 {
		l.MaxPrematureResets = DefaultMaxPrematureResets
	}
	if l.MaxEmptyFrames <= 0 {
		l.MaxEmptyFrames = DefaultMaxEmptyFrames
	}
	if l.MaxSettingsPerSecond <= 0 {
		l.MaxSettingsPerSecond = DefaultMaxSettingsPerSecond
	}
	return l
}

// abuseCounters are a connection's counts. Guarded by conn.mu.
type abuseCounters struct {
	resetBudget    float64       // premature resets the client may still make
	resetRefilled  time.Duration // when resetBudget was last refilled, since conn.start
	resetsSpent    int           // premature resets over the connection's life, for the log
	emptyFrames    int           // consecutive
	settingsWindow time.Duration // since conn.start (a Duration, 8 bytes, where a time.Time takes 24)
	settings       int           // in the window that started at settingsWindow; 0 before the first
}

// Abuse kinds, in GOAWAY debug data, logs and metrics.
const (
	AbuseRapidReset       = "rapid_reset"
	AbuseEmptyFrames      = "empty_frames"
	AbuseSettingsFlood    = "settings_flood"
	AbuseTooManyStreams   = "too_many_streams"
	AbuseHeaderListTooBig = "header_list_too_large"
	// AbusePrefaceTimeout is a connection closed because it sent no
	// preface within Config.PrefaceTimeout (no GOAWAY: no HTTP/2 yet).
	AbusePrefaceTimeout = "preface_timeout"
)

func abuse(code http2.ErrCode, kind, detail string) connError {
	return connError{Code: code, Reason: kind + ": " + detail, Kind: kind}
}

// spendResetLocked charges a premature reset made at now to the Rapid
// Reset budget, a token bucket of MaxPrematureResets that refills at
// MaxPrematureResets per second, and fails once it is overdrawn.
func (c *conn) spendResetLocked(now time.Time) error {
	a, limit := &c.abuse, float64(c.srv.cfg.Limits.MaxPrematureResets)
	at := now.Sub(c.start)
	if a.resetsSpent == 0 {
		a.resetBudget = limit
	} else if d := at - a.resetRefilled; d > 0 {
		a.resetBudget = min(limit, a.resetBudget+limit*d.Seconds())
	}
	a.resetRefilled = at
	a.resetBudget--
	a.resetsSpent++
	if a.resetBudget < 0 {
		return abuse(http2.ErrCodeEnhanceYourCalm, AbuseRapidReset,
			strconv.Itoa(a.resetsSpent)+" of "+strconv.FormatUint(c.streams.opened, 10)+
				" streams reset before the app answered, faster than "+strconv.Itoa(c.srv.cfg.Limits.MaxPrematureResets)+" per second")
	}
	return nil
}

// checkDataLocked counts empty DATA frames in a row.
func (c *conn) checkDataLocked(h frameHeader) error {
	if h.Length > 0 || h.Flags.Has(http2.FlagDataEndStream) {
		c.abuse.emptyFrames = 0
		return nil
	}
	c.abuse.emptyFrames++
	if c.abuse.emptyFrames > c.srv.cfg.Limits.MaxEmptyFrames {
		return abuse(http2.ErrCodeEnhanceYourCalm, AbuseEmptyFrames, strconv.Itoa(c.abuse.emptyFrames)+" empty DATA frames in a row")
	}
	return nil
}

// checkSettingsLocked counts SETTINGS frames per second.
func (c *conn) checkSettingsLocked(now time.Time) error {
	a := &c.abuse
	if at := now.Sub(c.start); a.settings == 0 || at-a.settingsWindow >= time.Second {
		a.settingsWindow, a.settings = at, 0
	}
	a.settings++
	if a.settings > c.srv.cfg.Limits.MaxSettingsPerSecond {
		return abuse(http2.ErrCodeEnhanceYourCalm, AbuseSettingsFlood, strconv.Itoa(a.settings)+" SETTINGS frames within a second")
	}
	return nil
}

// checkStreamsLocked refuses a stream beyond the app's
// SETTINGS_MAX_CONCURRENT_STREAMS: a client that ignores the app's limit is
// misbehaving, and the app would only refuse the streams one by one.
// It runs before the new stream is added.
func (c *conn) checkStreamsLocked() error {
	if limit := c.appMaxStreams.Load(); uint64(len(c.streams.open)) >= uint64(limit) {
		return abuse(http2.ErrCodeProtocol, AbuseTooManyStreams, "more than the app's SETTINGS_MAX_CONCURRENT_STREAMS "+strconv.FormatUint(uint64(limit), 10)+" open streams")
	}
	return nil
}
