package inject

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/pkg/keepalive"
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
		return 0, &AnnotationError{name, v, "a Go duration of at least 1s such as 30s"}
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
		return "", &AnnotationError{name, v, "host:port of the app's DisconnectNotify service such as 127.0.0.1:15091"}
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
