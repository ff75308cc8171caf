//go:build !linux

package proxy

import (
	"errors"
	"net"
)

const redirectSupported = false

func originalDst(*net.TCPConn) (int, error) {
	return 0, errors.New("SO_ORIGINAL_DST needs Linux")
}
