package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// getStatus polls url until it answers or the deadline passes.
func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		<-tick.C
	}
}

// TestProbes runs the proxy command and checks /healthz and /readyz as the
// app goes from down to up, then stops it as SIGTERM would.
func TestProbes(t *testing.T) {
	appAddr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"proxy", "--listen", freeAddr(t), "--upstream", appAddr, "--admin", admin,
			"--log-level", "error", "--drain-timeout", "1s", "--notify-addr", ""})
		done <- cmd.ExecuteContext(ctx)
	}()

	if code, body := getStatus(t, "http://"+admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := getStatus(t, "http://"+admin+"/readyz"); code != 503 || !strings.Contains(body, "dial upstream") {
		t.Fatalf("/readyz with the app down = %d %q, want 503 naming the dial", code, body)
	}
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if code, body := getStatus(t, "http://"+admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz with the app up = %d %q, want 200", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("proxy exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not stop")
	}
}

// TestListenTakenLeavesNothingRunning: a --listen address already in use is
// an error that names it, and the notifier started before it is closed
// (goleak in TestMain sees any goroutine left behind).
func TestListenTakenLeavesNothingRunning(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"proxy", "--listen", taken.Addr().String(), "--upstream", freeAddr(t), "--admin", freeAddr(t),
		"--log-level", "error", "--notify-addr", freeAddr(t)})
	err = cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--listen "+taken.Addr().String()) {
		t.Fatalf("proxy on a taken --listen: %v; want an error naming --listen %s", err, taken.Addr())
	}
}
