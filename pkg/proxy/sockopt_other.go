//go:build !linux

package proxy

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is missing: the
// keepalive still finds a client that stopped acknowledging, only later
// for data already queued.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
