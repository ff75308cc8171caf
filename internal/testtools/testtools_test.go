package testtools

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPattern(t *testing.T) {
	tests := []struct {
		name      string
		test      string
		want      string
		matches   []string // names each element must match
		unmatched []string // names the first element must not match
	}{
		{
			name:      "top level",
			test:      "TestGRPCInterop",
			want:      "^TestGRPCInterop$",
			matches:   []string{"TestGRPCInterop"},
			unmatched: []string{"TestGRPCInteropX", "XTestGRPCInterop"},
		},
		{
			name:    "subtest",
			test:    "TestGRPCInterop/direct",
			want:    "^TestGRPCInterop$/^direct$",
			matches: []string{"TestGRPCInterop", "direct"},
		},
		{
			name:    "regexp characters are literal",
			test:    "TestX/a.b(c)",
			want:    `^TestX$/^a\.b\(c\)$`,
			matches: []string{"TestX", "a.b(c)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runPattern(tt.test)
			if got != tt.want {
				t.Fatalf("runPattern(%q) = %q, want %q", tt.test, got, tt.want)
			}
			parts := strings.Split(got, "/")
			for i, name := range tt.matches {
				if !regexp.MustCompile(parts[i]).MatchString(name) {
					t.Errorf("element %q does not match %q", parts[i], name)
				}
			}
			for _, name := range tt.unmatched {
				if regexp.MustCompile(parts[0]).MatchString(name) {
					t.Errorf("element %q matches %q", parts[0], name)
				}
			}
		})
	}
}

func TestBin(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HANGUP_CACHE", dir)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(dir, "bin", "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Bin(t, "tool"); got != tool {
		t.Errorf("Bin(tool) = %q, want %q", got, tool)
	}
}

func TestStartProcessCapturesOutput(t *testing.T) {
	p := StartProcess(t, context.Background(), "/bin/sh", "-c", "echo out; echo err >&2")
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("sh: %v", err)
	}
	for _, want := range []string{"out\n", "err\n"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("output %q lacks %q", p.Output(), want)
		}
	}
}

func TestStartProcessKilledAtCleanup(t *testing.T) {
	var p *Process
	t.Run("owner", func(t *testing.T) {
		// Runs until killed: only the subtest's cleanup can end it.
		p = StartProcess(t, context.Background(), "/bin/sh", "-c", "exec sleep 600")
	})
	select {
	case <-p.Done():
	default:
		t.Fatal("the process still runs after its test's cleanup")
	}
	if p.Err() == nil {
		t.Error("a killed process reported a clean exit")
	}
}

func TestProcessWaitTimeout(t *testing.T) {
	p := StartProcess(t, context.Background(), "/bin/sh", "-c", "exec sleep 600")
	if err := p.Wait(50 * time.Millisecond); err == nil {
		t.Fatal("Wait on a process that does not exit returned nil")
	}
	<-p.Done() // Wait killed it
}

func TestWaitHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	WaitHTTP(t, srv.URL, 5*time.Second)
}

func TestWaitHTTPGivesUpWhenStopped(t *testing.T) {
	stop := make(chan struct{})
	close(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on a port just freed; the closed stop channel must
	// end the wait long before the deadline.
	url := "http://127.0.0.1:" + strconv.Itoa(FreePort(t)) + "/healthz"
	if err := waitHTTP(ctx, url, stop); err == nil {
		t.Fatal("waitHTTP succeeded against a closed port")
	}
	if ctx.Err() != nil {
		t.Fatal("waitHTTP ran until the deadline despite stop being closed")
	}
}

func TestWaitTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	WaitTCP(t, ln.Addr().String(), 5*time.Second, nil)
}

func TestInNetns(t *testing.T) {
	InNetns(t, func(t *testing.T) {
		ifaces, err := net.Interfaces()
		if err != nil {
			t.Fatalf("list interfaces: %v", err)
		}
		if len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 || ifaces[0].Flags&net.FlagUp == 0 {
			t.Fatalf("interfaces in the namespace = %v, want only loopback, up", ifaces)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen on loopback in the namespace: %v", err)
		}
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFreePortNeverRepeats: within one test process FreePort hands out a
// port once. Two ports asked for one after the other, neither bound yet
// (an app's port and the sidecar's --watch-addr), were once the same and
// the sidecar could not bind its own ("address already in use").
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
	}
}
