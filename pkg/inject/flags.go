package inject

import (
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Defaults of the webhook server (ServerConfig), declared once: the flags
// show them, ServerConfig and AdmissionServer fall back to them, and a
// test (test/deploy) keeps the chart's webhook values equal to them.
const (
	// DefaultCABundleResync is how often the self-managed caBundle is
	// checked and restored.
	DefaultCABundleResync = time.Minute
	// DefaultNativeSidecars asks the API server whether it supports native
	// sidecars (Kubernetes 1.29 and later).
	DefaultNativeSidecars = "auto"
	// DefaultShutdownTimeout bounds the webhook's graceful shutdown.
	DefaultShutdownTimeout = 10 * time.Second
)

// RegisterFlags defines the flags of `sidecar inject` on fs, writing into c.
// The chart's Deployment passes exactly these; a test parses its rendered
// arguments with this function. They are pflag flags like every other
// subcommand's, so HANGUP_* variables and the command's --config file (the
// hangup flag file, not the sidecar defaults of --sidecar-config) set them
// too.
func (c *ServerConfig) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", ":"+strconv.Itoa(int(DefaultWebhookPort)), "HTTPS listen address of the webhook")
	fs.StringVar(&c.CertDir, "cert-dir", "", "directory with tls.crt and tls.key, reloaded on change (cert-manager); empty: self-managed CA")
	fs.StringVar(&c.SidecarConfigFile, "sidecar-config", "", "YAML file of sidecar defaults (the chart's ConfigMap)")
	fs.StringVar(&c.WebhookConfigName, "webhook-config", "", "MutatingWebhookConfiguration whose caBundle gets the self-managed CA")
	fs.Var((*commaList)(&c.Hosts), "hosts", "comma-separated DNS names or IPs of the self-managed serving certificate")
	fs.DurationVar(&c.CABundleResync, "ca-bundle-resync", DefaultCABundleResync, "how often the caBundle is checked (minimum 1s)")
	fs.StringVar(&c.NativeSidecars, "native-sidecars", DefaultNativeSidecars, "auto, true or false: inject as an init container with restartPolicy Always")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty: in-cluster config")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "graceful shutdown bound")
}

// commaList is a pflag.Value of comma-separated strings; blanks around
// items and empty items are dropped.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Type() string { return "strings" }

func (l *commaList) Set(s string) error {
	*l = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
