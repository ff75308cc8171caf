// Package redirect installs the packet redirection of hangup's redirect mode:
// TCP connections arriving at the app's port are redirected (NAT REDIRECT)
// to the sidecar's inbound port, which reads the original destination with
// SO_ORIGINAL_DST. It is the logic of `sidecar init-redirect`, run in an init
// container with NET_ADMIN (and NET_RAW for iptables).
//
// Only the PREROUTING hook is used: it sees connections that come from
// outside the pod. The sidecar's own dial to 127.0.0.1:APP is locally
// generated (OUTPUT), so it is never redirected back into the sidecar and no
// uid-based exclusion is needed.
package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// Backend is the tool that installs the rules.
type Backend string

// Backends.
const (
	// BackendIPTables feeds iptables-restore (and ip6tables-restore when
	// Config.IPv6 is set).
	BackendIPTables Backend = "iptables"
	// BackendNFT feeds `nft -f -`; one inet table covers IPv4 and IPv6.
	BackendNFT Backend = "nft"
)

// ChainName is the iptables chain and nft table that hold the rules, so
// that Remove deletes exactly what Run added.
const ChainName = "HANGUP_INBOUND"

// nftTable is the nft table name (nft names are conventionally lower case).
const nftTable = "hangup"

// Config is what init-redirect needs.
type Config struct {
	// AppPort is the app's TCP port whose inbound connections are
	// redirected. Required, 1 to 65535.
	AppPort int
	// ProxyPort is the sidecar's inbound listener. Default ports.Proxy.
	ProxyPort int
	// Backend is iptables or nft. Default iptables.
	Backend Backend
	// IPv6 also installs the rules with ip6tables-restore (iptables backend
	// only; nft's inet table always covers both). Default false.
	IPv6 bool
}

func (c *Config) defaults() error {
	if c.ProxyPort == 0 {
		c.ProxyPort = ports.Proxy
	}
	if c.Backend == "" {
		c.Backend = BackendIPTables
	}
	return validate(c.Backend, c.AppPort, c.ProxyPort)
}

func validate(b Backend, appPort, proxyPort int) error {
	switch {
	case b != BackendIPTables && b != BackendNFT:
		return fmt.Errorf("backend %q: want iptables or nft", b)
	case appPort < 1 || appPort > 65535:
		return fmt.Errorf("app port %d: want 1 to 65535", appPort)
	case proxyPort < 1 || proxyPort > 65535:
		return fmt.Errorf("proxy port %d: want 1 to 65535", proxyPort)
	case appPort == proxyPort:
		return fmt.Errorf("app port %d equals the proxy port: want different ports", appPort)
	}
	return nil
}

// Rules returns the input for iptables-restore --noflush or nft -f that
// redirects inbound TCP to appPort to proxyPort.
func Rules(b Backend, appPort, proxyPort int) (string, error) {
	if err := validate(b, appPort, proxyPort); err != nil {
		return "", err
	}
	if b == BackendNFT {
		// Declaring then deleting the table makes the script idempotent
		// without failing when the table does not exist yet.
		return fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport %[2]d redirect to :%[3]d
	}
}
`, nftTable, appPort, proxyPort), nil
	}
	// ":CHAIN - [0:0]" creates the chain or, under --noflush, empties it.
	// The jump from PREROUTING would be appended again on a second run:
	// Run removes an earlier one first.
	return fmt.Sprintf(`*nat
:%[1]s - [0:0]
-A %[1]s -p tcp -m tcp --dport %[2]d -j REDIRECT --to-ports %[3]d
-A PREROUTING -p tcp -j %[1]s
COMMIT
`, ChainName, appPort, proxyPort), nil
}

// RemoveRules returns the input that deletes what Rules added.
func RemoveRules(b Backend) (string, error) {
	switch b {
	case BackendNFT:
		return fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", nftTable), nil
	case BackendIPTables:
		return fmt.Sprintf("*nat\n-D PREROUTING -p tcp -j %[1]s\n-F %[1]s\n-X %[1]s\nCOMMIT\n", ChainName), nil
	}
	return "", fmt.Errorf("backend %q: want iptables or nft", b)
}

// commands returns the programs (with arguments) that read the rules.
func commands(c Config) [][]string {
	if c.Backend == BackendNFT {
		return [][]string{{"nft", "-f", "-"}}
	}
	// -w waits for the xtables lock instead of failing when another
	// process holds it.
	cmds := [][]string{{"iptables-restore", "-w", "5", "--noflush"}}
	if c.IPv6 {
		cmds = append(cmds, []string{"ip6tables-restore", "-w", "5", "--noflush"})
	}
	return cmds
}

// Run installs the redirection. A chain left by an earlier run of the same
// pod (an init container restarted in the same network namespace) is
// replaced, not duplicated.
func Run(ctx context.Context, c Config) error {
	if err := c.defaults(); err != nil {
		return fmt.Errorf("init-redirect: %w", err)
	}
	if c.Backend == BackendIPTables {
		// Drop an earlier jump; it is absent on a first run, which is fine.
		_ = Remove(ctx, c)
	}
	rules, _ := Rules(c.Backend, c.AppPort, c.ProxyPort)
	return apply(ctx, c, rules)
}

// Remove deletes the redirection that Run installed.
func Remove(ctx context.Context, c Config) error {
	if err := c.defaults(); err != nil {
		return fmt.Errorf("remove redirect: %w", err)
	}
	rules, _ := RemoveRules(c.Backend)
	return apply(ctx, c, rules)
}

func apply(ctx context.Context, c Config, rules string) error {
	for _, argv := range commands(c) {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return fmt.Errorf("%s not found: the init-redirect image must contain it (or choose the other backend): %w", argv[0], err)
		}
		cmd := exec.CommandContext(ctx, path, argv[1:]...)
		cmd.Stdin = strings.NewReader(rules)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("run %s: %w", strings.Join(argv, " "), ctx.Err())
			}
			return fmt.Errorf("run %s: %w: %s", strings.Join(argv, " "), err, msg)
		}
	}
	return nil
}
