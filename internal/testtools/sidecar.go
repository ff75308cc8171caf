package testtools

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SidecarBinEnv names the environment variable that points tests at an
// already built sidecar binary. When it is unset, SidecarBin builds one.
// InNetns passes it on to the re-executed test so the build happens once.
const SidecarBinEnv = "HANGUP_SIDECAR_BIN"

// sidecarReadyTimeout bounds how long StartSidecar waits for /healthz.
const sidecarReadyTimeout = 15 * time.Second

// buildTimeout bounds "go build" of the sidecar; a cold build of the module
// takes well under a minute on the CI machines.
const buildTimeout = 3 * time.Minute

// ModuleRoot returns the directory of the hangup module (the one holding
// go.mod), asked from the go command so that it works from any package.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("find the module root with go list -m: %v%s", err, stderrOf(err))
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("go list -m printed no module directory; run the tests inside the hangup module")
	}
	return dir
}

// SidecarBin returns the path of a sidecar binary: $HANGUP_SIDECAR_BIN if
// set, otherwise one freshly built from ./cmd/sidecar into a temporary
// directory of t (the go build cache makes repeated builds cheap).
func SidecarBin(t testing.TB) string {
	t.Helper()
	if path := os.Getenv(SidecarBinEnv); path != "" {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s=%s: %v", SidecarBinEnv, path, err)
		}
		return path
	}
	root := ModuleRoot(t)
	out := filepath.Join(t.TempDir(), "sidecar")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/sidecar")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sidecar in %s: %v\n%s", root, err, msg)
	}
	return out
}

// Sidecar is a running "sidecar proxy" started by StartSidecar.
type Sidecar struct {
	// Addr is the host:port the proxy listens on for clients.
	Addr string
	// AdminAddr is the host:port of the admin server (/healthz, /readyz,
	// /metrics).
	AdminAddr string
	// Process is the sidecar's process, for its output and exit status.
	Process *Process
}

// StartSidecar starts
//
//	sidecar proxy --listen 127.0.0.1:P --upstream UPSTREAM --admin 127.0.0.1:A EXTRA...
//
// on free loopback ports, waits until http://127.0.0.1:A/healthz answers
// 200 OK, and returns it. It is stopped when the test ends.
func StartSidecar(t testing.TB, upstream string, extra ...string) *Sidecar {
	t.Helper()
	bin := SidecarBin(t)
	s := &Sidecar{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		AdminAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
	}
	args := append([]string{"proxy",
		"--listen", s.Addr,
		"--upstream", upstream,
		"--admin", s.AdminAddr,
	}, extra...)
	s.Process = StartProcess(t, context.Background(), bin, args...)
	ctx, cancel := context.WithTimeout(context.Background(), sidecarReadyTimeout)
	defer cancel()
	if err := waitHTTP(ctx, "http://"+s.AdminAddr+"/healthz", s.Process.Done()); err != nil {
		t.Fatalf("sidecar %q not healthy: %v", args, err)
	}
	return s
}

// stderrOf returns the stderr captured in an *exec.ExitError, for messages.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return "\n" + string(ee.Stderr)
	}
	return ""
}
