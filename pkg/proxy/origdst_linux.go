//go:build linux

package proxy

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from
// linux/netfilter_ipv6/ip6_tables.h, which x/sys/unix does not define: the
// IPv6 twin of SO_ORIGINAL_DST, at level SOL_IPV6.
const ip6tSOOriginalDst = 80

// originalDst returns the destination port a client dialled before an
// nftables or iptables REDIRECT sent its connection to the sidecar, and
// whether the connection is IPv6. A dual-stack listener's IPv4 connections
// have IPv4-mapped local addresses and answer SO_ORIGINAL_DST; IPv6 ones
// answer IP6T_SO_ORIGINAL_DST.
func originalDst(c *net.TCPConn) (port int, v6 bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	v6 = c.LocalAddr().(*net.TCPAddr).IP.To4() == nil
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			// The kernel answers with a sockaddr_in6; IPv6MTUInfo starts
			// with one, as other Go proxies use it.
			var info *unix.IPv6MTUInfo
			info, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
			if serr == nil {
				// sin6_port is in network byte order in memory.
				port = int(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, info.Addr.Port)))
			}
			return
		}
		// The kernel answers with a sockaddr_in; IPv6Mreq is merely a
		// 16-byte buffer of the right size.
		var mreq *unix.IPv6Mreq
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if serr == nil {
			port = int(mreq.Multiaddr[2])<<8 | int(mreq.Multiaddr[3])
		}
	})
	if err != nil {
		return 0, v6, err
	}
	if serr != nil {
		if v6 {
			return 0, v6, fmt.Errorf("IP6T_SO_ORIGINAL_DST: %w", serr)
		}
		return 0, v6, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	return port, v6, nil
}

// redirectSupported says whether redirect mode can find a connection's
// original destination on this OS.
const redirectSupported = true
