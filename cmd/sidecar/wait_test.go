package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/inject"
)

func runWait(ctx context.Context, args ...string) error {
	root := newRootCmd()
	root.SetArgs(append([]string{"wait"}, args...))
	return root.ExecuteContext(ctx)
}

// TestWaitReturnsOnceTheSidecarIsHealthy starts `sidecar wait` before the
// real sidecar exists, as the kubelet runs the postStart hook right after
// starting the container: it returns once /healthz answers.
func TestWaitReturnsOnceTheSidecarIsHealthy(t *testing.T) {
	bin := testtools.SidecarBin(t)
	admin := testtools.FreeAddr(t)
	done := make(chan error, 1)
	go func() { done <- runWait(context.Background(), "--admin", admin, "--timeout", "30s") }()
	p := testtools.StartProcess(t, context.Background(), bin, "proxy", "--listen", testtools.FreeAddr(t),
		"--upstream", "127.0.0.1:1", "--admin", admin, "--notify-addr", "")
	select {
	case <-p.Done():
		t.Fatalf("sidecar exited: %v\n%s", p.Err(), p.Output())
	default:
	}
	if err := testtools.Receive(t, done, 1, 30*time.Second)[0]; err != nil {
		t.Fatalf("wait: %v", err)
	}
}

func TestWaitErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  []string
	}{
		{"nothing listens", []string{"--admin", testtools.FreeAddr(t), "--timeout", "300ms"}, false, []string{"sidecar not healthy at http://127.0.0.1:", "after 300ms", "container running `sidecar proxy`"}},
		{"zero timeout", []string{"--timeout", "0s"}, true, []string{"invalid --timeout 0s"}},
		{"port without colon", []string{"--admin", "16020"}, true, []string{`invalid --admin "16020"`, "host:port"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := runWait(context.Background(), tc.args...)
			if err == nil {
				t.Fatal("wait succeeded")
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Errorf("usage error %v, want %v: %v", !tc.usage, tc.usage, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestWaitTimeoutAgrees keeps wait's own default equal to the injector's
// hold timeout, which wait may not import (see defaultWaitTimeout).
func TestWaitTimeoutAgrees(t *testing.T) {
	if defaultWaitTimeout != inject.HoldTimeout {
		t.Errorf("wait --timeout default %s, inject.HoldTimeout %s: want the same", defaultWaitTimeout, inject.HoldTimeout)
	}
}
