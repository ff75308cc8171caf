package inject

import (
	"fmt"
	"time"

	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// Round-trip time measurement's annotations (README, "Round-trip time"),
// off unless the chart's defaults or the pod turn them on.
const (
	// AnnotationRTTInterval overrides Config.RTTInterval (--rtt-interval):
	// how long after its previous PING the sidecar sends one only to
	// measure a client's round-trip time. "0" is off.
	AnnotationRTTInterval = "hangup.dev/rtt-interval"
	// AnnotationRTTHeader overrides Config.RTTHeader (--rtt-header):
	// "true" adds x-hangup-rtt-us to every request toward the app.
	AnnotationRTTHeader = "hangup.dev/rtt-header"
)

// rttIntervalWant says what an RTT interval looks like, for messages. The
// minimum is the sidecar's own (keepalive.Config.Validate), so a value the
// injector accepts never stops the sidecar.
var rttIntervalWant = fmt.Sprintf("a Go duration of at least %s such as 5s, or 0 for off", keepalive.MinDuration)

// rttSettings are a pod's round-trip time measurement; the zero value is
// off, as the sidecar's defaults are.
type rttSettings struct {
	interval time.Duration
	header   bool
}

// parseRTTInterval reads an RTT interval, from an annotation or the
// chart's sidecar config; ok is false when the sidecar would refuse it.
func parseRTTInterval(v string) (d time.Duration, ok bool) {
	d, err := time.ParseDuration(v)
	return d, err == nil && validRTTInterval(d)
}

// validRTTInterval reports whether the sidecar accepts d as --rtt-interval.
func validRTTInterval(d time.Duration) bool {
	return d == 0 || d >= keepalive.MinDuration
}

// parseRTT reads the RTT annotations over s, the chart's defaults.
func parseRTT(a map[string]string, s rttSettings) (rttSettings, error) {
	if v, ok := a[AnnotationRTTInterval]; ok {
		d, valid := parseRTTInterval(v)
		if !valid {
			return s, &AnnotationError{AnnotationRTTInterval, v, rttIntervalWant}
		}
		s.interval = d
	}
	if v, ok := a[AnnotationRTTHeader]; ok {
		var err error
		if s.header, err = parseBool(AnnotationRTTHeader, v); err != nil {
			return s, err
		}
	}
	return s, nil
}

// args are the sidecar's flags for s; none for the sidecar's defaults, so
// that pods that do not measure get the arguments they always had. The
// header's default (proxy.DefaultRTTHeader, off) is the relay's, out of
// this package's reach; test/deploy holds the chart's value to it.
func (s rttSettings) args() []string {
	var args []string
	if s.interval != keepalive.DefaultRTTInterval {
		args = append(args, "--rtt-interval="+s.interval.String())
	}
	if s.header {
		args = append(args, "--rtt-header=true")
	}
	return args
}

// loadRTT reads the RTT values of the chart's sidecar config into c.
func loadRTT(f FileConfig, c *Config) error {
	if f.RTTInterval != "" {
		d, ok := parseRTTInterval(f.RTTInterval)
		if !ok {
			return fmt.Errorf("rttInterval %q: want %s", f.RTTInterval, rttIntervalWant)
		}
		c.RTTInterval = d
	}
	if f.RTTHeader != nil {
		c.RTTHeader = *f.RTTHeader
	}
	return nil
}
