package redirect

import (
	"flag"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// RegisterFlags defines the flags of `sidecar init-redirect` on fs, writing
// into c. Cobra commands add them with cmd.Flags().AddGoFlagSet(fs). The
// injector (pkg/inject) passes --app-port, --proxy-port and --backend.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.AppPort, "app-port", 0, "the app's TCP port whose inbound connections are redirected (required)")
	fs.IntVar(&c.ProxyPort, "proxy-port", ports.Proxy, "the sidecar's inbound port")
	fs.Func("backend", "iptables (default) or nft", func(s string) error {
		c.Backend = Backend(s)
		return nil
	})
	fs.BoolVar(&c.IPv6, "ipv6", false, "also redirect IPv6 (iptables backend; nft always does)")
}
