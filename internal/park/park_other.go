//go:build !linux || hangup_portable

package park

import "net"

// Supported says whether Register can park sockets: not without epoll,
// nor when built with the hangup_portable tag to test this fallback on Linux.
const Supported = false

// Poller is the fallback where epoll is missing: it parks nothing.
type Poller struct{}

// New returns a Poller whose Register always reports ErrUnsupported.
func New() *Poller { return &Poller{} }

// Close does nothing: the fallback holds no descriptor or goroutine.
func (p *Poller) Close() error { return nil }

// Register reports ErrUnsupported: without epoll the caller's reads block
// on their own goroutine.
func (p *Poller) Register(net.Conn, func()) (*Socket, error) { return nil, ErrUnsupported }

// Socket is never made by the fallback Poller; its methods exist so that
// callers compile on every OS.
type Socket struct{}

// Park reports ErrUnsupported.
func (s *Socket) Park() error { return ErrUnsupported }

// Wake reports that nothing was parked.
func (s *Socket) Wake() bool { return false }

// Deregister does nothing.
func (s *Socket) Deregister() {}
