package redirect

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// RegisterFlags defines the flags of `sidecar init-redirect` on fs, writing
// into c. They are pflag flags like every other subcommand's, so HANGUP_*
// variables and --config set them too. The injector (pkg/inject) passes
// every one of them.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.AppPort, "app-port", 0, "the app's gRPC port (required; never excluded)")
	fs.IntVar(&c.ProxyPort, "proxy-port", ports.Proxy, "the sidecar's inbound port, where connections are redirected")
	fs.IntVar(&c.AdminPort, "admin-port", ports.Admin, "the sidecar's admin port, never redirected")
	c.Backend = BackendAuto
	fs.Var(word[Backend]{&c.Backend}, "backend", "auto (nftables, iptables only where the kernel lacks nf_tables), nftables or iptables")
	c.IPv6 = IPv6Auto
	fs.Var(word[IPv6Mode]{&c.IPv6}, "ipv6", "redirect IPv6 too: auto (when the kernel has IPv6), true or false")
	fs.Func("exclude-ports", "comma-separated inbound TCP ports left alone, such as 9090,8081", func(s string) error {
		p, err := ParsePorts(s)
		c.ExcludePorts = p
		return err
	})
	fs.Func("exclude-cidrs", "comma-separated source networks left alone, such as 192.0.2.0/24,2001:db8::/32", func(s string) error {
		p, err := ParseCIDRs(s)
		c.ExcludeCIDRs = p
		return err
	})
}

// word is a pflag.Value of a string type whose values Validate checks;
// its String is the current value, so --help shows the real default.
type word[T ~string] struct{ p *T }

func (w word[T]) String() string {
	if w.p == nil {
		return ""
	}
	return string(*w.p)
}

func (w word[T]) Set(s string) error {
	*w.p = T(s)
	return nil
}

func (w word[T]) Type() string { return "string" }

// ParsePorts reads a comma-separated list of ports; blanks around items
// and empty items are ignored. The injector validates annotations with it.
func ParsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || !validPort(n) {
			return nil, fmt.Errorf("%q is not a port: want comma-separated numbers from 1 to 65535 such as 9090,8081", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParseCIDRs reads a comma-separated list of networks (IPv4 or IPv6,
// address/bits); a bare address means that one host.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a network: want comma-separated CIDRs such as 192.0.2.0/24,2001:db8::/32", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}
