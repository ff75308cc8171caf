//go:build linux && !hangup_portable

package park

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Supported says whether Register can park sockets (epoll is here).
const Supported = true

// wakeToken names the eventfd that interrupts the wait on Close.
const wakeToken = 0

// Poller waits for readability of many sockets on one goroutine. The zero
// value is not usable; call New. Its goroutine starts with the first
// Register and ends in Close.
type Poller struct {
	start sync.Once
	loop  sync.WaitGroup

	// Immutable once started.
	epfd   int
	wakefd int

	mu      sync.Mutex
	sockets map[uint64]*Socket
	next    uint64
	closed  bool
	err     error // why the poller could not start or stopped
}

// New returns a Poller. It allocates nothing in the kernel until the first
// Register.
func New() *Poller {
	return &Poller{sockets: make(map[uint64]*Socket), epfd: -1, wakefd: -1}
}

func (p *Poller) open() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("park: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return fmt.Errorf("park: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(wakefd)
		_ = unix.Close(epfd)
		return fmt.Errorf("park: epoll_ctl add eventfd: %w", err)
	}
	p.epfd, p.wakefd = epfd, wakefd
	p.loop.Add(1)
	go p.run()
	return nil
}

// Close stops the poller's goroutine and waits for it. Sockets still
// parked are not resumed: their owner must Wake them (after closing them)
// before or after Close.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.start.Do(func() {}) // a poller never started stays so
	if p.wakefd < 0 {
		return nil
	}
	var one [8]byte
	one[0] = 1
	if _, err := unix.Write(p.wakefd, one[:]); err != nil {
		return fmt.Errorf("park: wake poller: %w", err)
	}
	p.loop.Wait()
	return errors.Join(unix.Close(p.wakefd), unix.Close(p.epfd))
}

// Register adds c, not yet parked; ErrUnsupported when c has no socket
// descriptor. resume is called once per Park, on the
// poller's goroutine or the one calling Wake, when the socket is ready; it
// must not block (start a goroutine).
func (p *Poller) Register(c net.Conn, resume func()) (*Socket, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	p.start.Do(func() {
		if p.isClosed() {
			p.setErr(ErrClosed)
			return
		}
		if err := p.open(); err != nil {
			p.setErr(err)
		}
	})
	p.mu.Lock()
	if p.closed || p.err != nil {
		err := p.err
		p.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return nil, err
	}
	p.next++
	s := &Socket{p: p, rc: rc, token: p.next, resume: resume}
	p.sockets[s.token] = s
	p.mu.Unlock()

	// Registered disarmed: Park only ever modifies it, so two Parks
	// racing never both try to add it.
	ev := unix.EpollEvent{Events: unix.EPOLLONESHOT}
	setToken(&ev, s.token)
	if err := s.ctl(unix.EPOLL_CTL_ADD, &ev); err != nil {
		s.Deregister()
		return nil, err
	}
	return s, nil
}

func (p *Poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Poller) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// run waits for ready sockets and resumes them, until Close.
func (p *Poller) run() {
	defer p.loop.Done()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.setErr(fmt.Errorf("park: epoll_wait: %w", err))
			return
		}
		for i := range n {
			tok := token(&events[i])
			if tok == wakeToken {
				return
			}
			p.mu.Lock()
			s := p.sockets[tok]
			p.mu.Unlock()
			if s != nil {
				s.ready()
			}
		}
	}
}

// Socket states.
const (
	running int32 = iota // its owner reads it, or is about to
	parked               // armed in the poller; resume not yet called
)

// Socket is one registered socket.
type Socket struct {
	p      *Poller
	rc     syscall.RawConn
	token  uint64
	resume func()
	state  atomic.Int32
}

// Park arms the socket: resume is called once, when it has bytes, EOF or an
// error to read, or when Wake is called. Until then the caller must not
// read it. An error (the socket is closed) means it was not parked and
// resume will not be called for this Park.
func (s *Socket) Park() error {
	// Parked before armed: a readiness reported the instant it is armed
	// must find the socket parked, or it would be lost.
	s.state.Store(parked)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setToken(&ev, s.token)
	if err := s.ctl(unix.EPOLL_CTL_MOD, &ev); err != nil {
		if s.state.CompareAndSwap(parked, running) {
			return err
		}
		// A Wake got there first and has resumed it.
	}
	return nil
}

// Wake resumes the socket now if it is parked, and reports whether it
// was. Closing a parked socket reports nothing to the poller, so whoever
// closes one must Wake it for its owner to see the close.
func (s *Socket) Wake() bool {
	if !s.state.CompareAndSwap(parked, running) {
		return false
	}
	s.resume()
	return true
}

func (s *Socket) ready() {
	if s.state.CompareAndSwap(parked, running) {
		s.resume()
	}
}

// Deregister forgets the socket. The kernel drops its epoll registration
// when the socket is closed.
func (s *Socket) Deregister() {
	s.p.mu.Lock()
	delete(s.p.sockets, s.token)
	s.p.mu.Unlock()
}

// ctl changes the socket's registration while holding a reference to its
// descriptor, so that it cannot be closed (and its number reused by another
// socket) meanwhile.
func (s *Socket) ctl(op int, ev *unix.EpollEvent) error {
	var cerr error
	err := s.rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(s.p.epfd, op, int(fd), ev)
	})
	if err != nil {
		return fmt.Errorf("park: socket: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("park: epoll_ctl: %w", cerr)
	}
	return nil
}

// The event's 8 data bytes carry the token; unix.EpollEvent splits them
// into Fd and Pad.
func setToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd, ev.Pad = int32(uint32(t)), int32(uint32(t>>32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
