//go:build !linux

package proxy

import (
	"errors"
	"net"
)

const redirectSupported = false

func originalDst(*net.TCPConn) (port int, v6 bool, err error) {
	return 0, false, errors.New("SO_ORIGINAL_DST needs Linux")
}
