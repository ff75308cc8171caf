package polyglot

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
)

const (
	// matrixTimeout bounds the whole interop matrix: every app started once,
	// every client run against it. Warm, it takes about a minute.
	matrixTimeout = 8 * time.Minute
	// clientTimeout bounds one client process, its start included (a JVM
	// on a busy 2-core machine is the slowest; the cancel case waits up to
	// 5 s for the session to be freed).
	clientTimeout = 60 * time.Second
)

// interopClient is one language's client of hangup.example.v1 (the
// examples' client.js, client.py, ...). Its CLI is
// `--target HOST:PORT --case unary|streaming|large|cancel`; it exits 0 when
// the case passed and prints one line saying what went wrong otherwise.
type interopClient struct {
	// name is the subtest's name; the client is built by
	// scripts/install-polyglot.sh with the app of the same language.
	name string
	// command returns the program and its leading arguments; the suite
	// appends --target and --case. It fails the test, naming the install
	// command, when the client or its toolchain is not there.
	command func(t *testing.T, p paths) (string, []string)
}

// interopClients are the client stacks of the matrix: grpc-js, gRPC
// C-core (Python), grpc-java on Netty and tonic on hyper/h2.
var interopClients = []interopClient{
	{name: "node", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		node := lookPath(t, "node", "node")
		need(t, "node", filepath.Join(p.root, "examples/node/node_modules/@grpc/grpc-js/package.json"))
		return node, []string{filepath.Join(p.root, "examples/node/client.js")}
	}},
	{name: "python", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		python := need(t, "python", filepath.Join(p.cache, "polyglot/python/venv/bin/python"))
		need(t, "python", filepath.Join(p.root, "examples/python/gen/hangup/example/v1/subscription_pb2_grpc.py"))
		return python, []string{filepath.Join(p.root, "examples/python/client.py")}
	}},
	{name: "java", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		java := lookPath(t, "java", "java")
		jar := need(t, "java", filepath.Join(p.cache, "polyglot/java/hangup-example-java.jar"))
		return java, []string{"-cp", jar, "dev.hangup.example.Client"}
	}},
	{name: "rust-tonic", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		return need(t, "rust-tonic", filepath.Join(p.cache, "rust/target/release/hangup-example-tonic-client")), nil
	}},
}

// interopCases are the client's --case values: a Sessions call, a Subscribe
// stream of three requests ended by a half-close, 4 MiB each way, and a
// cancelled stream whose session the app must free within 5 s.
var interopCases = []string{"unary", "streaming", "large", "cancel"}

// TestInteropMatrix runs the client of every language against the app of
// every language through the real sidecar binary. Each app and its sidecar
// are started once and serve every client and case.
func TestInteropMatrix(t *testing.T) {
	p := newPaths(t)
	t.Setenv(testtools.SidecarBinEnv, sidecarBinOnce(t)) // one build for every app
	ctx, cancel := context.WithTimeout(t.Context(), matrixTimeout)
	defer cancel()
	for _, a := range apps {
		t.Run("app="+a.name, func(t *testing.T) {
			app := startApp(t, a, p)
			sc := startSidecar(t, app)
			for _, c := range interopClients {
				for _, kase := range interopCases {
					t.Run("client="+c.name+"/case="+kase, func(t *testing.T) {
						prog, args := c.command(t, p)
						args = append(args, "--target", sc.Addr, "--case", kase)
						runInteropClient(t, ctx, prog, args)
					})
				}
			}
			// No client may leave a session behind, whatever its case.
			waitSessions(t, app, 0, eventBound)
		})
	}
}

// runInteropClient runs one client process to its end and fails the test
// with its output unless it exits 0 within clientTimeout (and the matrix's
// own deadline, ctx).
func runInteropClient(t *testing.T, ctx context.Context, prog string, args []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.WaitDelay = time.Second // a killed client's pipes must not hold us
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no result within %s (matrix deadline %s): %v\n%s",
			filepath.Base(prog), strings.Join(args, " "), clientTimeout, matrixTimeout, ctx.Err(), out)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("%s %s: exit %d after %s:\n%s", filepath.Base(prog), strings.Join(args, " "), exit.ExitCode(), took, out)
	}
	if err != nil {
		t.Fatalf("run %s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	t.Logf("passed in %s", took)
}
