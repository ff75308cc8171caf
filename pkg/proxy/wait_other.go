//go:build !unix

package proxy

import "net"

// readWaiter is a no-op where a socket cannot be peeked at without
// reading it: the Read that follows waits with its buffer.
type readWaiter struct{}

func newReadWaiter(net.Conn) *readWaiter { return &readWaiter{} }

func (w *readWaiter) wait() error { return nil }
