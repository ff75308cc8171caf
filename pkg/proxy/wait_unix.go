//go:build unix

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// readWaiter blocks until a socket has bytes to read (or EOF, or an
// error) without holding a read buffer. It is made once per socket so that
// waiting allocates nothing.
type readWaiter struct {
	rc   syscall.RawConn // nil when the conn has no descriptor (TLS)
	one  [1]byte
	err  error
	peek func(fd uintptr) bool
}

func newReadWaiter(c net.Conn) *readWaiter {
	w := &readWaiter{}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	w.peek = func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), w.one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(e, syscall.EAGAIN):
			return false
		case e != nil && !errors.Is(e, syscall.EINTR):
			// The kernel reports a socket error (ECONNRESET) once: the
			// Read that follows would see only EOF.
			w.err = os.NewSyscallError("read", e)
		}
		return true
	}
	return w
}

// wait returns when a Read would not block. Without a descriptor it
// returns at once and the Read that follows waits with its buffer.
func (w *readWaiter) wait() error {
	if w.rc == nil {
		return nil
	}
	w.err = nil
	if err := w.rc.Read(w.peek); err != nil {
		return err
	}
	return w.err
}
