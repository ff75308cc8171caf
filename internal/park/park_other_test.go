//go:build !linux || hangup_portable

package park_test

import (
	"errors"
	"net"
	"testing"

	"github.com/hangup-dev/hangup/internal/park"
)

// TestFallbackParksNothing: without epoll a real socket is refused with
// ErrUnsupported, so its owner keeps a blocking reader.
func TestFallbackParksNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := park.New()
	s, err := p.Register(c, func() { t.Error("resumed a socket that was never parked") })
	if !errors.Is(err, park.ErrUnsupported) || s != nil {
		t.Fatalf("Register = %v, %v; want nil, ErrUnsupported", s, err)
	}
	if park.Supported {
		t.Fatal("Supported is true in the fallback")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
