package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// iptables installs the plan with iptables-restore and ip6tables-restore.
type iptables struct{}

var _ installer = iptables{}

func (iptables) name() Backend { return BackendIPTables }

// restoreTools are the programs of each family; -w waits for the xtables
// lock instead of failing when another process holds it.
var restoreTools = map[bool][]string{
	false: {"iptables-restore", "-w", "5", "--noflush"},
	true:  {"ip6tables-restore", "-w", "5", "--noflush"},
}

func (b iptables) install(ctx context.Context, p plan) error {
	// Drop what an earlier run installed, in both families: the script
	// would append a second jump, and a run without IPv6 must not leave
	// the IPv6 rules of an earlier one. ip6tables-restore may be missing
	// when IPv6 is not wanted, hence no error from the IPv6 removal then.
	if err := b.remove(ctx, p.IPv6); err != nil {
		return err
	}
	if !p.IPv6 {
		_ = b.remove1(ctx, true)
	}
	for _, v6 := range families(p.IPv6) {
		if err := restore(ctx, restoreTools[v6], iptablesRules(p, v6)); err != nil {
			return err
		}
	}
	return nil
}

func (b iptables) remove(ctx context.Context, ipv6 bool) error {
	var errs []error
	for _, v6 := range families(ipv6) {
		errs = append(errs, b.remove1(ctx, v6))
	}
	return errors.Join(errs...)
}

// remove1 removes the rules of one family, and succeeds when there are
// none. The jump is deleted alone first, since iptables-restore fails a
// whole script on a missing rule; that failure is ignored, and any other
// (no permission, no tool) fails the second script too and is reported.
func (iptables) remove1(ctx context.Context, v6 bool) error {
	_ = restore(ctx, restoreTools[v6], iptablesRemoveJump)
	return restore(ctx, restoreTools[v6], iptablesRemoveChain)
}

func families(ipv6 bool) []bool {
	if ipv6 {
		return []bool{false, true}
	}
	return []bool{false}
}

// iptablesRules returns the iptables-restore --noflush input of one family
// (v6 for ip6tables-restore). ":CHAIN - [0:0]" creates the chain or, under
// --noflush, empties it.
func iptablesRules(p plan, v6 bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", ChainName)
	nets := p.V4
	if v6 {
		nets = p.V6
	}
	for _, n := range nets {
		fmt.Fprintf(&b, "-A %s -s %s -j RETURN\n", ChainName, n)
	}
	for _, port := range p.Ports {
		fmt.Fprintf(&b, "-A %s -p tcp -m tcp --dport %d -j RETURN\n", ChainName, port)
	}
	fmt.Fprintf(&b, "-A %s -p tcp -j REDIRECT --to-ports %d\n", ChainName, p.Proxy)
	fmt.Fprintf(&b, "-A PREROUTING -p tcp -j %s\nCOMMIT\n", ChainName)
	return b.String()
}

// iptablesRemoveJump and iptablesRemoveChain delete what iptablesRules
// added. ":CHAIN - [0:0]" creates the chain or empties it, so that -X
// finds an empty chain either way.
var (
	iptablesRemoveJump  = fmt.Sprintf("*nat\n-D PREROUTING -p tcp -j %s\nCOMMIT\n", ChainName)
	iptablesRemoveChain = fmt.Sprintf("*nat\n:%[1]s - [0:0]\n-X %[1]s\nCOMMIT\n", ChainName)
)

func restore(ctx context.Context, argv []string, rules string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%s not found: the iptables backend needs it in the image; the default backend (auto or nftables) needs no tool: %w", argv[0], err)
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Stdin = strings.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("run %s: %w", strings.Join(argv, " "), ctx.Err())
		}
		return fmt.Errorf("run %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
