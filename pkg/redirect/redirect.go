// Package redirect installs the packet redirection of hangup's redirect mode:
// TCP connections arriving at the pod are redirected (NAT REDIRECT) to the
// sidecar's inbound port, which reads the original destination with
// SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6) and relays each connection
// to the loopback address of its family and the port the client dialled.
// It is the logic of `sidecar init-redirect`, run in an init container with
// NET_ADMIN.
//
// Every inbound TCP port is redirected except the sidecar's own ports, the
// excluded ports (metrics, health checks, a second protocol) and connections
// from excluded source CIDRs, as Istio's istio-iptables does with its
// include-all default: a port the user forgot stays visible, a port that
// must not go through the relay is named.
//
// Only the PREROUTING hook is used: it sees connections that come from
// outside the pod. The sidecar's own dial to the loopback address is locally
// generated (OUTPUT), so it is never redirected back into the sidecar and no
// uid-based exclusion is needed.
//
// The rules are programmed through netlink (nftables) from Go, so that the
// sidecar's static, distroless image runs init-redirect with no tool
// installed. The iptables backend (iptables-restore) is the fallback for
// kernels built without nf_tables.
//
// It must not relay: reading the original destination is pkg/proxy's job.
package redirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"syscall"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// Backend is how the rules are installed.
type Backend string

// Backends.
const (
	// BackendAuto uses nftables, and iptables only when the kernel has no
	// nf_tables.
	BackendAuto Backend = "auto"
	// BackendNFTables programs one inet table through netlink: no tool is
	// needed in the image.
	BackendNFTables Backend = "nftables"
	// BackendIPTables feeds iptables-restore (and ip6tables-restore for
	// IPv6), which the image must contain.
	BackendIPTables Backend = "iptables"
)

// IPv6Mode says whether IPv6 connections are redirected too.
type IPv6Mode string

// IPv6 modes.
const (
	// IPv6Auto redirects IPv6 when the kernel has IPv6 enabled.
	IPv6Auto IPv6Mode = "auto"
	// IPv6On redirects IPv6 and fails where the kernel has none.
	IPv6On IPv6Mode = "true"
	// IPv6Off redirects IPv4 only.
	IPv6Off IPv6Mode = "false"
)

// ChainName is the iptables chain that holds the rules, so that Remove
// deletes exactly what Run added.
const ChainName = "HANGUP_INBOUND"

// TableName is the nftables table (family inet) that holds the rules.
const TableName = "hangup"

// Config is what init-redirect needs. Defaults are applied by Run and
// Remove; the zero value of every optional field means its default.
type Config struct {
	// AppPort is the app's gRPC port. Required, 1 to 65535; it must not be
	// excluded nor one of the sidecar's ports.
	AppPort int
	// ProxyPort is the sidecar's inbound listener, the redirect's target.
	// Never redirected. Default ports.Proxy.
	ProxyPort int
	// AdminPort is the sidecar's admin port (probes, metrics). Never
	// redirected. Default ports.Admin.
	AdminPort int
	// Backend is auto, nftables or iptables. Default auto.
	Backend Backend
	// IPv6 is auto, true or false. Default auto.
	IPv6 IPv6Mode
	// ExcludePorts are inbound TCP ports left alone. Default none.
	ExcludePorts []int
	// ExcludeCIDRs are source networks (IPv4 or IPv6) whose connections are
	// left alone. Default none.
	ExcludeCIDRs []netip.Prefix
	// Logger says which backend was used. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with every default filled in, or an error naming
// the bad value.
func (c Config) withDefaults() (Config, error) {
	if c.ProxyPort == 0 {
		c.ProxyPort = ports.Proxy
	}
	if c.AdminPort == 0 {
		c.AdminPort = ports.Admin
	}
	if c.Backend == "" {
		c.Backend = BackendAuto
	}
	if c.IPv6 == "" {
		c.IPv6 = IPv6Auto
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, c.validate()
}

// Validate reports every bad value of c after defaults, each naming its
// flag and what is expected.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

func (c Config) validate() error {
	var errs []error
	switch c.Backend {
	case BackendAuto, BackendNFTables, BackendIPTables:
	default:
		errs = append(errs, fmt.Errorf("invalid --backend %q: want auto, nftables or iptables", c.Backend))
	}
	switch c.IPv6 {
	case IPv6Auto, IPv6On, IPv6Off:
	default:
		errs = append(errs, fmt.Errorf("invalid --ipv6 %q: want auto, true or false", c.IPv6))
	}
	for _, p := range []struct {
		flag string
		v    int
	}{{"app-port", c.AppPort}, {"proxy-port", c.ProxyPort}, {"admin-port", c.AdminPort}} {
		if !validPort(p.v) {
			errs = append(errs, fmt.Errorf("invalid --%s %d: want 1 to 65535", p.flag, p.v))
		}
	}
	if c.AppPort == c.ProxyPort || c.AppPort == c.AdminPort || c.ProxyPort == c.AdminPort {
		errs = append(errs, fmt.Errorf("--app-port %d, --proxy-port %d and --admin-port %d: want three different ports", c.AppPort, c.ProxyPort, c.AdminPort))
	}
	for _, p := range c.ExcludePorts {
		switch {
		case !validPort(p):
			errs = append(errs, fmt.Errorf("invalid --exclude-ports %d: want ports from 1 to 65535", p))
		case p == c.AppPort:
			errs = append(errs, fmt.Errorf("invalid --exclude-ports %d: it is the app port, whose connections the sidecar must see", p))
		}
	}
	for _, p := range c.ExcludeCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid --exclude-cidrs %v: want networks such as 192.0.2.0/24 or 2001:db8::/32", p))
		}
	}
	return errors.Join(errs...)
}

// plan is what the rules say, the same for both backends: per family,
// connections from the excluded sources or to the excluded ports return
// untouched, every other TCP connection is redirected to Proxy.
type plan struct {
	// IPv6 says whether IPv6 is redirected too.
	IPv6 bool
	// Ports are the destination ports left alone, sorted, without
	// duplicates: the sidecar's own and the excluded ones.
	Ports []uint16
	// V4 and V6 are the excluded source networks of each family, masked.
	V4, V6 []netip.Prefix
	// Proxy is the redirect's target port.
	Proxy uint16
}

func newPlan(c Config, ipv6 bool) plan {
	p := plan{IPv6: ipv6, Proxy: uint16(c.ProxyPort)}
	for _, port := range append([]int{c.ProxyPort, c.AdminPort}, c.ExcludePorts...) {
		p.Ports = append(p.Ports, uint16(port))
	}
	slices.Sort(p.Ports)
	p.Ports = slices.Compact(p.Ports)
	for _, n := range c.ExcludeCIDRs {
		if n.Addr().Is4In6() {
			n = netip.PrefixFrom(n.Addr().Unmap(), max(n.Bits()-96, 0))
		}
		n = n.Masked()
		if n.Addr().Is4() {
			p.V4 = append(p.V4, n)
		} else {
			p.V6 = append(p.V6, n)
		}
	}
	return p
}

// Run installs the redirection. Rules left by an earlier run of the same
// pod (an init container restarted in the same network namespace) are
// replaced, not duplicated.
func Run(ctx context.Context, c Config) error {
	c, ipv6, b, err := prepare(c)
	if err != nil {
		return fmt.Errorf("init-redirect: %w", err)
	}
	p := newPlan(c, ipv6)
	if err := b.install(ctx, p); err != nil {
		return fmt.Errorf("init-redirect with %s: %w", b.name(), err)
	}
	c.Logger.Info("redirect installed", "backend", b.name(), "ipv6", ipv6,
		"proxy_port", c.ProxyPort, "excluded_ports", p.Ports, "excluded_cidrs", c.ExcludeCIDRs)
	return nil
}

// Remove deletes what Run installed and nothing else; it is a no-op where
// nothing was installed.
func Remove(ctx context.Context, c Config) error {
	c, ipv6, b, err := prepare(c)
	if err != nil {
		return fmt.Errorf("remove redirect: %w", err)
	}
	if err := b.remove(ctx, ipv6); err != nil {
		return fmt.Errorf("remove redirect with %s: %w", b.name(), err)
	}
	c.Logger.Info("redirect removed", "backend", b.name())
	return nil
}

// prepare applies c's defaults, decides IPv6 and picks the backend.
func prepare(c Config) (Config, bool, installer, error) {
	c, err := c.withDefaults()
	if err != nil {
		return c, false, nil, err
	}
	ipv6, err := wantIPv6(c.IPv6)
	if err != nil {
		return c, false, nil, err
	}
	b, err := choose(c.Backend, c.Logger, nftAvailable)
	return c, ipv6, b, err
}

// errNoNFTables marks a kernel without nf_tables, where auto falls back to
// iptables. Other errors (no NET_ADMIN, say) are reported, not hidden by
// a fallback that would fail the same way.
var errNoNFTables = errors.New("nf_tables is not available in this kernel")

// classifyProbe marks the errors of a kernel without nf_tables (no
// nfnetlink protocol, no nf_tables subsystem) with errNoNFTables.
func classifyProbe(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%w: %w", errNoNFTables, err)
	}
	return fmt.Errorf("probe nf_tables: %w", err)
}

// installer is one backend.
type installer interface {
	name() Backend
	install(ctx context.Context, p plan) error
	remove(ctx context.Context, ipv6 bool) error
}

// choose returns the backend for b; auto asks probe (nftAvailable) whether
// the kernel has nf_tables.
func choose(b Backend, log *slog.Logger, probe func() error) (installer, error) {
	switch b {
	case BackendIPTables:
		return iptables{}, nil
	case BackendNFTables:
		return nftBackend{}, nil
	}
	err := probe()
	if err == nil {
		return nftBackend{}, nil
	}
	if !errors.Is(err, errNoNFTables) {
		return nil, err
	}
	log.Warn("the kernel has no nf_tables: falling back to iptables", "err", err)
	return iptables{}, nil
}

// ipv6Sysctl exists when the kernel has IPv6 (it is absent with
// ipv6.disable=1 or without CONFIG_IPV6).
const ipv6Sysctl = "/proc/sys/net/ipv6"

func wantIPv6(m IPv6Mode) (bool, error) {
	return ipv6Wanted(m, ipv6Sysctl)
}

// ipv6Wanted decides with sysctl as the directory that exists when the
// kernel has IPv6.
func ipv6Wanted(m IPv6Mode, sysctl string) (bool, error) {
	_, err := os.Stat(sysctl)
	has := err == nil
	switch m {
	case IPv6Off:
		return false, nil
	case IPv6On:
		if !has {
			return false, fmt.Errorf("--ipv6=true but the kernel has no IPv6 (%w): use --ipv6=auto or false", err)
		}
		return true, nil
	}
	return has, nil
}
