// Package inject is hangup's mutating admission webhook. It is built in three
// layers, as Linkerd's proxy injector is:
//
//   - Patch (patch.go): a pure function from a Pod, its namespace's labels and
//     the chart defaults to a JSON patch, or a denial. No HTTP, no client.
//   - AdmissionServer (server.go): a generic HTTPS admission/v1 server with
//     certificate reload, /healthz and graceful shutdown.
//   - Serve (webhook.go): the thin glue the `sidecar inject` command calls:
//     certificates, discovery of native sidecar support, caBundle upkeep.
//
// It must not reach into the relay: the sidecar's flags and the pod spec
// are its whole contract with the pod.
package inject

import (
	"time"

	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/ports"
	"github.com/hangup-dev/hangup/pkg/redirect"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Names shared by the webhook, the chart and the Dockerfile. A test
// (dockerfile_test.go) keeps the Dockerfile and the chart in step with them.
const (
	// SidecarName is the name of the injected proxy container.
	SidecarName = "hangup-sidecar"
	// InitRedirectName is the name of the init container of redirect mode.
	InitRedirectName = "hangup-init-redirect"
	// DefaultBinaryPath is where the image keeps the sidecar binary; it is
	// also the image's ENTRYPOINT.
	DefaultBinaryPath = "/usr/local/bin/sidecar"
	// DefaultUID is the fixed non-root user (and group) of the image:
	// distroless's "nonroot".
	DefaultUID int64 = 65532
	// DefaultProxyPort is the sidecar's inbound listener.
	DefaultProxyPort int32 = ports.Proxy
	// DefaultAdminPort serves /healthz, /readyz and /metrics.
	DefaultAdminPort int32 = ports.Admin
	// DefaultWebhookPort is the webhook's HTTPS port in the container.
	DefaultWebhookPort int32 = ports.Webhook
	// DefaultHoldApplication: without native sidecars, the app starts only
	// once the sidecar is healthy. Annotation hangup.dev/hold-application.
	DefaultHoldApplication = true
	// HoldTimeout is how long the sidecar's postStart hook waits for it to
	// become healthy before the kubelet restarts the container.
	HoldTimeout = 2 * time.Minute
	// SidecarGOMAXPROCS is the GOMAXPROCS the sidecar gets when its
	// container has no CPU limit. Go sizes GOMAXPROCS to a CPU limit by
	// itself; without one it takes every core of the node, and an idle
	// sidecar's memory grows with that (per-P caches: 2.2 MiB of heap and
	// stacks at 2, 3.4-3.7 MiB at 64, the pod binary; see README). Two cores relay far more than an app in the same pod
	// usually sends (Istio's sidecars ran 2 worker threads by default,
	// Linkerd's run 1). Set a CPU limit on the sidecar to change it.
	SidecarGOMAXPROCS = "2"
)

// Mode is how the sidecar is attached to the app's traffic.
type Mode string

// Modes, as the sidecar's --mode flag spells them.
const (
	// ModePort: the sidecar listens on its own port; the Service's
	// targetPort points at it. Needs no privilege.
	ModePort Mode = "port"
	// ModeRedirect: an init container redirects the pod's inbound TCP to
	// the sidecar (nftables through netlink, or iptables); the sidecar reads
	// SO_ORIGINAL_DST.
	ModeRedirect Mode = "redirect"
)

// Config holds the chart's defaults for injected sidecars. Annotations on a
// Pod override the fields that have one. The zero value is not usable: start
// from DefaultConfig.
type Config struct {
	// Image of the sidecar (and of the redirect init container unless
	// InitImage is set). Required.
	Image string
	// InitImage runs `sidecar init-redirect`. The hangup image itself
	// serves the nftables backend; the iptables backend needs an image with
	// iptables-restore. Default: Image.
	InitImage string
	// ImagePullPolicy of both containers. Default: IfNotPresent.
	ImagePullPolicy corev1.PullPolicy
	// BinaryPath is the sidecar binary in the image. Default DefaultBinaryPath.
	BinaryPath string
	// UID runs the sidecar (user and group). Must not be 0. Default 65532.
	UID int64
	// ProxyPort and AdminPort are the sidecar's ports. Defaults ports.Proxy and ports.Admin.
	ProxyPort int32
	AdminPort int32
	// NotifyAddr is host:port of the app's DisconnectNotify service.
	// Default notify.DefaultAddr. Annotation hangup.dev/notify-addr.
	NotifyAddr string
	// NotifyHeaders are the request headers copied into events (lower case).
	// Default none. Annotation hangup.dev/notify-headers.
	NotifyHeaders []string
	// WatchAddr is where the sidecar serves DisconnectWatch.Watch (pull
	// mode), host:port. Default "": off. Annotation hangup.dev/watch-addr.
	WatchAddr string
	// KeepaliveTime: ping a client after this long without a frame.
	// Default keepalive.DefaultTime, minimum keepalive.MinDuration.
	// Annotation hangup.dev/keepalive-time.
	KeepaliveTime time.Duration
	// KeepaliveTimeout: a ping not answered in this long means the client is
	// gone. Default keepalive.DefaultTimeout, minimum keepalive.MinDuration.
	// Annotation hangup.dev/keepalive-timeout.
	KeepaliveTimeout time.Duration
	// RTTInterval: besides the keepalive PINGs, ping a client this long
	// after the previous PING only to measure its round-trip time.
	// Default keepalive.DefaultRTTInterval (0, off), else minimum
	// keepalive.MinDuration. Annotation hangup.dev/rtt-interval.
	RTTInterval time.Duration
	// RTTHeader adds x-hangup-rtt-us to every request toward the app.
	// Default false, the sidecar's (proxy.DefaultRTTHeader; a test in
	// test/deploy keeps them equal). Annotation hangup.dev/rtt-header.
	RTTHeader bool
	// Mode is port or redirect. Default port. Annotation hangup.dev/mode.
	Mode Mode
	// RedirectBackend is auto, nftables or iptables (see pkg/redirect).
	// Default auto: nftables through netlink, which needs NET_ADMIN only
	// and no tool in the image.
	RedirectBackend string
	// Resources of the sidecar container. Default 10m CPU / 32Mi requested,
	// 128Mi limit.
	Resources corev1.ResourceRequirements
	// OTLPEndpoint sets OTEL_EXPORTER_OTLP_ENDPOINT in the sidecar when not
	// empty, e.g. http://jaeger.observability:4318. Default empty.
	OTLPEndpoint string
}

// DefaultConfig returns the defaults for image; the chart's values.yaml
// repeats them.
func DefaultConfig(image string) Config {
	return Config{
		Image:            image,
		ImagePullPolicy:  corev1.PullIfNotPresent,
		BinaryPath:       DefaultBinaryPath,
		UID:              DefaultUID,
		ProxyPort:        DefaultProxyPort,
		AdminPort:        DefaultAdminPort,
		NotifyAddr:       notify.DefaultAddr,
		KeepaliveTime:    keepalive.DefaultTime,
		KeepaliveTimeout: keepalive.DefaultTimeout,
		RTTInterval:      keepalive.DefaultRTTInterval,
		Mode:             ModePort,
		RedirectBackend:  string(redirect.BackendAuto),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
		},
	}
}
