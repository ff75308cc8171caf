package proxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// tcpApp serves one plain-TCP connection at a time with handle, on
// 127.0.0.1; the cleanup closes the listener and waits for the handlers.
func tcpApp(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestTCPHalfCloseGetsTheWholeAnswer: a client sends its request and
// half-closes; the app answers only later than Linger after that FIN. The
// client must get the whole answer, then EOF. Before, the relay stopped
// reading the app Linger after the client's FIN, and the client saw a
// clean EOF with no answer at all.
func TestTCPHalfCloseGetsTheWholeAnswer(t *testing.T) {
	const linger = 100 * time.Millisecond
	answer := bytes.Repeat([]byte("answer "), 150_000) // ~1 MiB
	appAddr := tcpApp(t, func(c *net.TCPConn) {
		if _, err := io.ReadAll(c); err != nil { // the request, up to the client's FIN
			return
		}
		<-time.After(5 * linger) // a slow app: it answers well after the linger
		_, _ = c.Write(answer)
		_ = c.CloseWrite()
	})
	r := startRelay(t, appAddr, func(c *proxy.Config) { c.Linger = linger })
	c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, "QUERY everything\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v after %d bytes", err, len(got))
	}
	if !bytes.Equal(got, answer) {
		t.Fatalf("client got %d bytes, want the app's whole %d-byte answer", len(got), len(answer))
	}
}

// TestTCPIdleTimeout: a plain-TCP connection that moves nothing is closed
// after Config.TCPIdleTimeout, while one whose app keeps answering a
// silent client for several times that limit is not.
func TestTCPIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	tests := []struct {
		name     string
		app      func(c *net.TCPConn)
		wantData int // bytes the client must read before EOF
	}{
		{"silent both ways", func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }, 0},
		{"the app talks, the client is silent", func(c *net.TCPConn) {
			tick := time.NewTicker(idle / 4)
			defer tick.Stop()
			for range 20 { // 5 idle periods in all
				<-tick.C
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
		}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, tcpApp(t, tt.app), func(c *proxy.Config) { c.TCPIdleTimeout = idle })
			c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "HELLO\n"); err != nil { // not the HTTP/2 preface: plain TCP
				t.Fatal(err)
			}
			done := make(chan error, 1)
			var got []byte
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var err error
				got, err = io.ReadAll(c)
				done <- err
			}()
			if err := testtools.Receive(t, done, 1, 15*time.Second)[0]; err != nil && !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read: %v, want EOF when the relay closes the connection", err)
			}
			if len(got) != tt.wantData {
				t.Fatalf("client read %d bytes, want %d", len(got), tt.wantData)
			}
		})
	}
}
