package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hangup-dev/hangup/internal/park"
)

// Server relays the connections of its listeners to the app.
type Server struct {
	cfg Config

	wg     sync.WaitGroup // accept loops, connection handshakes and forwarders (running or parked)
	poller *park.Poller   // where quiet sockets wait

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // sockets not (yet) in a relay, closed on Close
	relays    map[*conn]struct{}    // HTTP/2 connections, which own their sockets; drained on Shutdown
	closed    bool

	serving atomic.Int32 // listeners accepting now
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		cfg:       cfg.withDefaults(),
		poller:    park.New(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		relays:    make(map[*conn]struct{}),
	}, nil
}

// Serve accepts connections on ln until ln is closed or Close is called. It
// returns nil after Close, else the accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.serving.Add(1)
	defer func() {
		s.serving.Add(-1)
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		s.wg.Done()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of descriptors and the like: back off as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a socket for Close to close; false once closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, sends every HTTP/2 client the two-phase
// graceful GOAWAY, and waits for the connections to end. Streams that
// outlive drainTimeout are cut off with reason SHUTDOWN; connections left
// when ctx ends are closed. It returns ctx's error in that case.
func (s *Server) Shutdown(ctx context.Context, drainTimeout time.Duration) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	relays := make([]*conn, 0, len(s.relays))
	for c := range s.relays {
		relays = append(relays, c)
	}
	s.mu.Unlock()
	for _, c := range relays {
		c.drain(drainTimeout)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return s.poller.Close()
	case <-ctx.Done():
		_ = s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops the listeners, closes every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	// Closed sockets report nothing to the poller: hand each parked one
	// back to its forwarder, which then reads the close and ends.
	for c := range s.relays {
		_ = c.client.Close()
		_ = c.app.Close()
		c.up.wake()
		c.down.wake()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.poller.Close()
}

// removeConn drops a finished relay from the server.
func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.relays, c)
	s.mu.Unlock()
}

// Serving reports whether at least one listener accepts connections.
func (s *Server) Serving() bool { return s.serving.Load() > 0 }

// CheckUpstream dials the app once, for readiness. In redirect mode
// without an upstream there is no single app address to check.
func (s *Server) CheckUpstream(ctx context.Context) error {
	if s.cfg.Upstream.Address == "" {
		return nil
	}
	c, err := s.dialUpstream(ctx, s.cfg.Upstream)
	if err != nil {
		return err
	}
	return c.Close()
}

func (s *Server) dialUpstream(ctx context.Context, up Address) (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.DialTimeout}
	c, err := d.DialContext(ctx, up.Network, up.Address)
	if err != nil {
		return nil, fmt.Errorf("dial upstream %s: %w", up, err)
	}
	return c, nil
}

// handle serves one accepted connection: TLS if configured, then the frame
// relay for HTTP/2 and the plain TCP relay for anything else.
func (s *Server) handle(c net.Conn) {
	// Until an HTTP/2 relay takes the sockets over, they are untracked
	// here when handle returns.
	var app net.Conn
	handedOver := false
	defer func() {
		if !handedOver {
			s.untrack(c)
			if app != nil {
				s.untrack(app)
			}
		}
	}()
	up, upErr := s.upstreamFor(c) // before TLS: it reads the TCP socket
	if tc, ok := c.(*net.TCPConn); ok {
		// A write that never drains (a client gone without a FIN) fails
		// after the keepalive would have found it dead anyway.
		if err := setUserTimeout(tc, s.cfg.Keepalive.TCPUserTimeout()); err != nil {
			s.cfg.Logger.Debug("TCP_USER_TIMEOUT not set", "err", err)
		}
	}
	if s.cfg.TLS != nil {
		tc := tls.Server(c, s.cfg.TLS)
		_ = c.SetDeadline(time.Now().Add(DefaultTLSHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			s.cfg.Logger.Info("tls handshake failed", "peer", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return
		}
		_ = c.SetDeadline(time.Time{})
		// Track the TLS conn instead: it is what the relay closes.
		s.untrack(c)
		c = tc
		if !s.track(c) {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.PrefaceTimeout))
	head, isH2, err := sniffPreface(c)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.cfg.Logger.Info("no HTTP/2 preface or first bytes in time; closing", "peer", c.RemoteAddr().String(),
				"preface_timeout", s.cfg.PrefaceTimeout, "bytes", len(head))
			s.cfg.Telemetry.Metrics().AbuseGoAway(AbusePrefaceTimeout)
		} else {
			s.cfg.Logger.Debug("connection closed before the first bytes", "peer", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	err = upErr
	if err == nil {
		app, err = s.dialUpstream(context.Background(), up)
	}
	if err == nil && !s.track(app) {
		_ = app.Close()
		app, err = nil, errors.New("server closed")
	}
	if err != nil {
		s.cfg.Logger.Warn("app unreachable; closing client connection", "peer", c.RemoteAddr().String(), "err", err)
		if isH2 {
			// An empty SETTINGS then GOAWAY(0): the client knows no stream
			// was processed and may retry elsewhere.
			var b []byte
			b = appendFrameHeader(b, frameHeader{Type: 0x4})
			b = appendGoAway(b, 0, 0x2, "hangup: app unreachable")
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(b)
		}
		_ = c.Close()
		return
	}
	if isH2 {
		// The relay owns both sockets from here, and Close finds them
		// through it: one map entry per connection, not three. A Close
		// before this lock has closed them already.
		rc := newConn(s, c, app)
		s.mu.Lock()
		delete(s.conns, c)
		delete(s.conns, app)
		s.relays[rc] = struct{}{}
		s.mu.Unlock()
		handedOver = true
		rc.relay(head[len(clientPreface):])
		return
	}
	s.relayTCP(c, app, head)
}
