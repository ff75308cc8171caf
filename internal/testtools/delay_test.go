package testtools

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer echoes every connection on 127.0.0.1 until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// TestDelayLine: bytes cross in order and never sooner than the delay each
// way (a lower bound, which load cannot break); after Blackhole nothing
// crosses. Upper bounds are no test's business.
func TestDelayLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const oneWay = 30 * time.Millisecond
	dl := NewDelayLine(ln, echoServer(t), oneWay)
	defer func() { _ = dl.Close() }()
	c, err := net.Dial("tcp", dl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		name  string
		delay time.Duration
		msg   string
	}{
		{"the initial delay", oneWay, "first"},
		{"a longer delay set while running", 2 * oneWay, "second, longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl.SetDelay(tt.delay)
			began := time.Now()
			if _, err := c.Write([]byte(tt.msg)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tt.msg))
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(tt.msg)) {
				t.Fatalf("echo %q, want %q", got, tt.msg)
			}
			if took := time.Since(began); took < 2*tt.delay {
				t.Errorf("round trip took %s, less than the two delays of %s", took, tt.delay)
			}
		})
	}

	dl.Blackhole()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(4 * oneWay))
	if n, err := c.Read(make([]byte, 4)); err == nil || n > 0 {
		t.Errorf("read %d bytes after Blackhole, want none (err %v)", n, err)
	}
}
