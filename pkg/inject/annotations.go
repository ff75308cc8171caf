package inject

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/redirect"
)

// Pod annotations and the namespace label read by the injector.
const (
	// AnnotationInject "true" asks for the sidecar; "false" opts a pod out
	// of a namespace that has LabelInject=enabled.
	AnnotationInject = "hangup.dev/inject"
	// AnnotationInjected is set on injected pods; its presence makes
	// injection a no-op, so a pod is never injected twice.
	AnnotationInjected = "hangup.dev/injected"
	// AnnotationAppPort is the app's gRPC port (--upstream 127.0.0.1:PORT).
	// Required unless the pod declares exactly one container port.
	AnnotationAppPort = "hangup.dev/app-port"
	// AnnotationNotifyAddr overrides Config.NotifyAddr (--notify-addr).
	AnnotationNotifyAddr = "hangup.dev/notify-addr"
	// AnnotationNotifyHeaders overrides Config.NotifyHeaders (--notify-headers).
	AnnotationNotifyHeaders = "hangup.dev/notify-headers"
	// AnnotationKeepaliveTime overrides Config.KeepaliveTime (--keepalive-time).
	AnnotationKeepaliveTime = "hangup.dev/keepalive-time"
	// AnnotationKeepaliveTimeout overrides Config.KeepaliveTimeout
	// (--keepalive-timeout).
	AnnotationKeepaliveTimeout = "hangup.dev/keepalive-timeout"
	// AnnotationMode overrides Config.Mode (--mode).
	AnnotationMode = "hangup.dev/mode"
	// AnnotationExcludeInboundPorts lists inbound TCP ports that redirect
	// mode leaves alone (init-redirect --exclude-ports), such as a metrics
	// port or a second protocol; the ports of probes are added by
	// themselves.
	AnnotationExcludeInboundPorts = "hangup.dev/exclude-inbound-ports"
	// AnnotationExcludeInboundCIDRs lists source networks whose connections
	// redirect mode leaves alone (init-redirect --exclude-cidrs).
	AnnotationExcludeInboundCIDRs = "hangup.dev/exclude-inbound-cidrs"
	// AnnotationIPv6 is whether redirect mode redirects IPv6 too:
	// auto (the default: when the node's kernel has IPv6), true or false
	// (init-redirect --ipv6).
	AnnotationIPv6 = "hangup.dev/ipv6"
	// AnnotationHoldApplication "false" lets the app start without waiting
	// for the sidecar on clusters without native sidecars. Default "true":
	// the sidecar gets a postStart hook (`sidecar wait`) and the kubelet
	// starts the next container only once it returns. Native sidecars are
	// ordered by the kubelet and ignore it.
	AnnotationHoldApplication = "hangup.dev/hold-application"

	// LabelInject on a namespace with value LabelInjectEnabled injects
	// every pod in it that does not opt out.
	LabelInject        = "hangup.dev/inject"
	LabelInjectEnabled = "enabled"
)

// AnnotationError is why a pod is denied: one annotation has a value the
// injector cannot use. Its message names the annotation, the value and what
// is expected, because the user reads it in `kubectl` output.
type AnnotationError struct {
	Annotation string
	Value      string
	Want       string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s=%q: want %s", e.Annotation, e.Value, e.Want)
}

// settings are the per-pod values after annotations override Config.
type settings struct {
	appPort          int32
	notifyAddr       string
	notifyHeaders    []string
	keepaliveTime    time.Duration
	keepaliveTimeout time.Duration
	mode             Mode
	// Redirect mode only.
	excludePorts []int
	excludeCIDRs []string
	ipv6         redirect.IPv6Mode
	// Clusters without native sidecars only.
	holdApplication bool
	grace           graceSettings
	watchAddr       string
	rtt             rttSettings
}

func parsePort(name, v string) (int32, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return 0, &AnnotationError{name, v, "a port number from 1 to 65535 such as 8080"}
	}
	return int32(n), nil
}

func parseKeepalive(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < keepalive.MinDuration {
		return 0, &AnnotationError{name, v, "a Go duration of at least " + keepalive.MinDuration.String() + " such as 30s"}
	}
	return d, nil
}

func parseMode(name, v string) (Mode, error) {
	switch m := Mode(v); m {
	case ModePort, ModeRedirect:
		return m, nil
	}
	return "", &AnnotationError{name, v, `"port" or "redirect"`}
}

func parseNotifyAddr(name, v string) (string, error) {
	host, port, err := net.SplitHostPort(v)
	if err == nil && host != "" {
		_, err = parsePort(name, port)
	}
	if err != nil || host == "" {
		return "", &AnnotationError{name, v, "host:port of the app's DisconnectNotify service such as " + notify.DefaultAddr}
	}
	return v, nil
}

// parseHeaders reads a comma-separated list of header names. HTTP/2 header
// names are lower case tokens (RFC 9113 section 8.2.1); pseudo-headers are
// not request metadata the app would want copied.
func parseHeaders(name, v string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(v, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !isLowerToken(h) {
			return nil, &AnnotationError{name, v, "comma-separated lower-case header names such as x-user-id,x-tenant"}
		}
		out = append(out, h)
	}
	return out, nil
}

func isLowerToken(s string) bool {
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// parseExcludePorts reads AnnotationExcludeInboundPorts; the app port and
// the sidecar's ports cannot be excluded (the sidecar's are never
// redirected anyway).
func parseExcludePorts(name, v string, app int32) ([]int, error) {
	ports, err := redirect.ParsePorts(v)
	if err != nil {
		return nil, &AnnotationError{name, v, "comma-separated port numbers from 1 to 65535 such as 9090,8081"}
	}
	for _, p := range ports {
		if p == int(app) {
			return nil, &AnnotationError{name, v, fmt.Sprintf("ports other than the app port %d, whose connections the sidecar must see", app)}
		}
	}
	return ports, nil
}

// parseExcludeCIDRs reads AnnotationExcludeInboundCIDRs.
func parseExcludeCIDRs(name, v string) ([]string, error) {
	nets, err := redirect.ParseCIDRs(v)
	if err != nil {
		return nil, &AnnotationError{name, v, "comma-separated networks such as 192.0.2.0/24,2001:db8::/32"}
	}
	out := make([]string, len(nets))
	for i, n := range nets {
		out[i] = n.String()
	}
	return out, nil
}

func parseIPv6(name, v string) (redirect.IPv6Mode, error) {
	switch m := redirect.IPv6Mode(v); m {
	case redirect.IPv6Auto, redirect.IPv6On, redirect.IPv6Off:
		return m, nil
	}
	return "", &AnnotationError{name, v, `"auto", "true" or "false"`}
}

func parseBool(name, v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, &AnnotationError{name, v, `"true" or "false"`}
}
