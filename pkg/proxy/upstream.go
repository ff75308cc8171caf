package proxy

import (
	"fmt"
	"net"
	"strconv"
)

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
