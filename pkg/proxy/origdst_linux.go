//go:build linux

package proxy

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// originalDst returns the destination a client dialled before an iptables
// or nft REDIRECT sent its connection to the sidecar (SO_ORIGINAL_DST).
// IPv4 only, as is the redirect the injector installs by default.
func originalDst(c *net.TCPConn) (port int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	err = rc.Control(func(fd uintptr) {
		// The kernel answers with a sockaddr_in; IPv6Mreq is merely a
		// 16-byte buffer of the right size, as other Go proxies use it.
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	return int(mreq.Multiaddr[2])<<8 | int(mreq.Multiaddr[3]), nil
}

// redirectSupported says whether redirect mode can find a connection's
// original destination on this OS.
const redirectSupported = true
