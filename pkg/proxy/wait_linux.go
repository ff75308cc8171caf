package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// waitReadable blocks until c has bytes to read (or EOF, or an error),
// without holding a read buffer: an idle connection then costs only its
// goroutine stacks. Connections without a raw descriptor (TLS) return at
// once and read into a buffer as usual.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var one [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(e, syscall.EAGAIN):
			return false
		case e != nil && !errors.Is(e, syscall.EINTR):
			// The kernel reports a socket error (ECONNRESET) once: the
			// Read that follows would see only EOF.
			perr = os.NewSyscallError("read", e)
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}
