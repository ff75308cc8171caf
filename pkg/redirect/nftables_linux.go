//go:build linux

package redirect

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftBackend programs the plan as one inet table through netlink, in one
// batch: the kernel applies the whole replacement or none of it.
type nftBackend struct{}

var _ installer = nftBackend{}

func (nftBackend) name() Backend { return BackendNFTables }

// nftAvailable asks the kernel for its inet tables.
func nftAvailable() error {
	c, err := nftables.New()
	if err == nil {
		_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	}
	return classifyProbe(err)
}

var table = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

func (nftBackend) install(_ context.Context, p plan) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	if err := delTableIfExists(c); err != nil {
		return err
	}
	c.AddTable(table)
	chain := c.AddChain(&nftables.Chain{
		Name:     "prerouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
	})
	for _, e := range nftRules(p) {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: e})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add table inet %s: %w", TableName, err)
	}
	return nil
}

func (nftBackend) remove(context.Context, bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	if err := delTableIfExists(c); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	return nil
}

// delTableIfExists queues the deletion of an earlier table, which the
// caller's Flush applies with whatever else it queues.
func delTableIfExists(c *nftables.Conn) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list inet tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			c.DelTable(table)
		}
	}
	return nil
}

// nftRules are the plan's rules, in order; in nft's own syntax:
//
//	ip saddr 192.0.2.0/24 return          (each excluded IPv4 source)
//	ip6 saddr 2001:db8::/32 return        (each excluded IPv6 source)
//	tcp dport 16006 return                (each port left alone)
//	meta nfproto ipv4 meta l4proto tcp redirect to :16006
//	                                      (without "meta nfproto ipv4" when IPv6 is redirected too)
func nftRules(p plan) [][]expr.Any {
	var rules [][]expr.Any
	for _, n := range p.V4 {
		rules = append(rules, sourceRule(unix.NFPROTO_IPV4, 12, n))
	}
	for _, n := range p.V6 {
		rules = append(rules, sourceRule(unix.NFPROTO_IPV6, 8, n))
	}
	for _, port := range p.Ports {
		rules = append(rules, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			// The TCP destination port: 2 bytes at offset 2.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
			&expr.Verdict{Kind: expr.VerdictReturn},
		})
	}
	var redirect []expr.Any
	if !p.IPv6 {
		redirect = nfproto(unix.NFPROTO_IPV4)
	}
	redirect = append(redirect,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Proxy)},
		&expr.Redir{RegisterProtoMin: 1},
	)
	return append(rules, redirect)
}

func nfproto(family byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
	}
}

// sourceRule returns "source address in n: return"; offset is where the
// source address sits in the family's network header.
func sourceRule(family byte, offset uint32, n netip.Prefix) []expr.Any {
	addr := n.Addr().AsSlice()
	mask := make([]byte, len(addr))
	for i := range n.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return append(nfproto(family),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Verdict{Kind: expr.VerdictReturn},
	)
}
