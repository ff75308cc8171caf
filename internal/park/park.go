// Package park lets idle sockets wait for bytes without a goroutine each.
//
// A goroutine blocked in Read costs its stack (2–8 KiB) for as long as the
// peer stays quiet, and a relayed connection has two sockets. A Poller
// instead waits for every parked socket at once, on one epoll descriptor and
// one goroutine, and calls the socket's resume function when it becomes
// readable: the caller then starts a goroutine for it. A connection with
// nothing to read thus holds no goroutine and no stack.
//
// The epoll registration is level-triggered and one-shot: Park arms it, one
// readiness (bytes, EOF, an error) or one Wake disarms it and resumes the
// socket exactly once.
//
// Parking needs epoll, so it is Linux only. Elsewhere Register reports
// ErrUnsupported and every reader blocks on its own goroutine, as it does
// for a TLS connection on Linux: correct, with a goroutine per idle
// direction. The build tag hangup_portable forces that fallback on Linux,
// so that CI tests it (make test-portable).
package park

import "errors"

// ErrUnsupported is returned by Register for a connection without a
// descriptor (a TLS connection, a pipe), and on every OS but Linux: its
// reader must block instead.
var ErrUnsupported = errors.New("park: cannot park this connection (no socket descriptor, or no epoll)")

// ErrClosed is returned by Register after Close.
var ErrClosed = errors.New("park: poller closed")
