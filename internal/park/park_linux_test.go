//go:build linux && !hangup_portable

package park_test

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangup-dev/hangup/internal/park"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns both ends of a TCP connection on 127.0.0.1.
func pair(t *testing.T) (local, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	peer, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	local, err = ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { _ = local.Close(); _ = peer.Close() })
	return local, peer
}

func newPoller(t *testing.T) *park.Poller {
	t.Helper()
	p := park.New()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// resumes counts a socket's resumes and signals each one.
type resumes struct {
	n  atomic.Int32
	ch chan struct{}
}

func newResumes() *resumes { return &resumes{ch: make(chan struct{}, 16)} }

func (r *resumes) resume() { r.n.Add(1); r.ch <- struct{}{} }

// wait fails unless a resume comes within d.
func (r *resumes) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(d):
		t.Fatalf("not resumed within %v", d)
	}
}

// none fails if a resume comes within d: the negative checks can only
// wait a while.
func (r *resumes) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.ch:
		t.Fatal("resumed, want still parked")
	case <-time.After(d):
	}
}

// parkedSocket registers the local end of a new connection with p and
// parks it.
func parkedSocket(t *testing.T, p *park.Poller) (s *park.Socket, r *resumes, local, peer *net.TCPConn) {
	t.Helper()
	local, peer = pair(t)
	r = newResumes()
	s, err := p.Register(local, r.resume)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Deregister)
	if err := s.Park(); err != nil {
		t.Fatal(err)
	}
	return s, r, local, peer
}

func TestParkResumesOnceWhenReadable(t *testing.T) {
	for _, tc := range []struct {
		name string
		// peerDoes makes the parked socket readable.
		peerDoes func(t *testing.T, peer *net.TCPConn)
	}{
		{"bytes", func(t *testing.T, peer *net.TCPConn) {
			if _, err := peer.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}},
		{"FIN", func(t *testing.T, peer *net.TCPConn) { _ = peer.CloseWrite() }},
		{"RST", func(t *testing.T, peer *net.TCPConn) { _ = peer.SetLinger(0); _ = peer.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r, _, peer := parkedSocket(t, newPoller(t))
			r.none(t, 20*time.Millisecond)
			tc.peerDoes(t, peer)
			r.wait(t, 5*time.Second)
			// One-shot: still readable, but not resumed again until parked.
			r.none(t, 20*time.Millisecond)
			if s.Wake() {
				t.Error("Wake of a running socket reported it parked")
			}
		})
	}
}

func TestParkWithBytesWaitingResumesAtOnce(t *testing.T) {
	p := newPoller(t)
	local, peer := pair(t)
	if _, err := peer.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	r := newResumes()
	s, err := p.Register(local, r.resume)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Deregister()
	// Level-triggered: bytes that arrived before Park are reported.
	if err := s.Park(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 5*time.Second)
	// Read them, park again: quiet now, then the next bytes resume it.
	buf := make([]byte, 16)
	if _, err := local.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Park(); err != nil {
		t.Fatal(err)
	}
	r.none(t, 20*time.Millisecond)
	if _, err := peer.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 5*time.Second)
	if got := r.n.Load(); got != 2 {
		t.Errorf("resumed %d times, want 2", got)
	}
}

func TestWake(t *testing.T) {
	s, r, local, _ := parkedSocket(t, newPoller(t))
	// Closing a parked socket tells the poller nothing: Wake is how the
	// closer hands it back to its owner.
	_ = local.Close()
	if !s.Wake() {
		t.Fatal("Wake of a parked socket reported it running")
	}
	if r.n.Load() != 1 {
		t.Fatalf("resumed %d times by Wake, want 1", r.n.Load())
	}
	if s.Wake() {
		t.Error("second Wake resumed again")
	}
	if err := s.Park(); err == nil {
		t.Error("Park of a closed socket succeeded")
	}
	if s.Wake() {
		t.Error("a failed Park left the socket parked")
	}
}

func TestManySocketsEachResumedOnce(t *testing.T) {
	const n = 200
	p := newPoller(t)
	var total atomic.Int32
	done := make(chan struct{}, n)
	peers := make([]*net.TCPConn, n)
	for i := range n {
		local, peer := pair(t)
		peers[i] = peer
		s, err := p.Register(local, func() { total.Add(1); done <- struct{}{} })
		if err != nil {
			t.Fatal(err)
		}
		defer s.Deregister()
		if err := s.Park(); err != nil {
			t.Fatal(err)
		}
	}
	for _, peer := range peers {
		if _, err := peer.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-done:
		case <-deadline:
			t.Fatalf("%d of %d sockets resumed", i, n)
		}
	}
	if got := total.Load(); got != n {
		t.Errorf("%d resumes for %d sockets", got, n)
	}
}

func TestRegister(t *testing.T) {
	t.Run("no descriptor", func(t *testing.T) {
		p := newPoller(t)
		local, _ := pair(t)
		_, err := p.Register(tls.Server(local, &tls.Config{}), func() {})
		if !errors.Is(err, park.ErrUnsupported) {
			t.Errorf("Register(tls.Conn) = %v, want ErrUnsupported", err)
		}
	})
	t.Run("closed socket", func(t *testing.T) {
		p := newPoller(t)
		local, _ := pair(t)
		_ = local.Close()
		if _, err := p.Register(local, func() {}); err == nil {
			t.Error("Register of a closed socket succeeded")
		}
	})
	t.Run("after Close", func(t *testing.T) {
		p := park.New()
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		local, _ := pair(t)
		if _, err := p.Register(local, func() {}); !errors.Is(err, park.ErrClosed) {
			t.Errorf("Register after Close = %v, want ErrClosed", err)
		}
	})
}
