package proxy

import (
	"fmt"
	"net"
	"strconv"

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

// upstreamFor returns where to relay connection c: the configured
// upstream, or in redirect mode 127.0.0.1 and the port the client dialled.
func (s *Server) upstreamFor(c net.Conn) (Address, error) {
	if !s.cfg.Redirect {
		return s.cfg.Upstream, nil
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return Address{}, fmt.Errorf("redirect mode needs a TCP connection, got %T", c)
	}
	port, err := originalDst(tc)
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
	return Address{Network: "tcp", Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
}
