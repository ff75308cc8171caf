package testtools

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pollInterval is how long WaitHTTP waits between two attempts. The wait is
// for a condition (the server answers), bounded by the caller's deadline.
const pollInterval = 20 * time.Millisecond

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a child process that must be told its port on the command line. Another
// process may grab it before the child binds it; tests that can pass a
// listener or ":0" should do that instead. It never returns a port twice
// in one process: the kernel may, once the probe is closed, so two ports
// asked for before either child binds (an app's and the sidecar's) could
// be one.
func FreePort(t testing.TB) int {
	t.Helper()
	for range maxPortProbes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port on 127.0.0.1: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			t.Fatalf("close probe listener on port %d: %v", port, err)
		}
		if _, given := givenPorts.LoadOrStore(port, true); !given {
			return port
		}
	}
	t.Fatalf("find a free port on 127.0.0.1: %d probes all gave ports handed out before", maxPortProbes)
	return 0
}

// givenPorts are the ports FreePort has returned in this process.
var givenPorts sync.Map

// maxPortProbes bounds FreePort's probes for a port not handed out yet.
const maxPortProbes = 1000

// WaitHTTP polls url with GET until it answers 200 OK and fails the test if
// that has not happened within timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := waitHTTP(ctx, url, nil); err != nil {
		t.Fatalf("wait for %s: %v", url, err)
	}
}

// WaitTCP polls addr until a TCP connection to it succeeds and fails the
// test if that has not happened within timeout. It gives up early when
// stop is closed (pass a Process's Done channel: a server that exited will
// never listen); stop may be nil.
func WaitTCP(t testing.TB, addr string, timeout time.Duration, stop <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	err := poll(ctx, stop, func(ctx context.Context) error {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		t.Fatalf("wait for a listener on %s: %v", addr, err)
	}
}

// waitHTTP polls url until it answers 200 OK, ctx ends, or stop is closed
// (for example because the process that should answer has exited).
func waitHTTP(ctx context.Context, url string, stop <-chan struct{}) error {
	// No keep-alive: an idle pooled connection would outlive the wait
	// (and trip goroutine leak checks).
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return poll(ctx, stop, func(ctx context.Context) error {
		return getOK(ctx, client, url)
	})
}

// poll calls probe every pollInterval until it returns nil, ctx ends, or
// stop is closed, and returns the last probe error in the two latter cases.
func poll(ctx context.Context, stop <-chan struct{}, probe func(context.Context) error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		last := probe(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ticker.C:
		case <-stop:
			return fmt.Errorf("gave up, the server is gone; last attempt: %w", last)
		case <-ctx.Done():
			return fmt.Errorf("not ready before the deadline; last attempt: %w", last)
		}
	}
}

func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s, want 200 OK", resp.Status)
	}
	return nil
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// Receive returns the next n values from ch, failing the test if they do
// not all arrive within d.
func Receive[T any](t testing.TB, ch <-chan T, n int, d time.Duration) []T {
	t.Helper()
	got := make([]T, 0, n)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timer.C:
			t.Fatalf("received %d of %d within %v: %+v", len(got), n, d, got)
		}
	}
	return got
}
