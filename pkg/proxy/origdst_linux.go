package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"

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

// upstreamFor returns where to relay connection c: the configured
// upstream, or in redirect mode the loopback address of the client's
// family (127.0.0.1 or ::1) and the port the client dialled. Keeping the
// family keeps what the app would see without the sidecar: an app that
// listens on IPv4 only never received IPv6 clients either.
func (s *Server) upstreamFor(c net.Conn) (Address, error) {
	if !s.cfg.Redirect {
		return s.cfg.Upstream, nil
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return Address{}, fmt.Errorf("redirect mode needs a TCP connection, got %T", c)
	}
	port, v6, err := originalDst(tc)
	if err != nil || port == tc.LocalAddr().(*net.TCPAddr).Port {
		// Not redirected (dialled the sidecar's own port): use the
		// configured upstream when there is one.
		if s.cfg.Upstream.Address != "" {
			return s.cfg.Upstream, nil
		}
		if err == nil {
			err = fmt.Errorf("connection to the sidecar's own port %d was not redirected", port)
		}
		return Address{}, fmt.Errorf("redirect mode without --upstream: %w", err)
	}
	host := "127.0.0.1"
	if v6 {
		host = "::1"
	}
	return Address{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}
