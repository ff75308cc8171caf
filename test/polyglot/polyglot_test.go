// Package polyglot runs the example app of every language (examples/node,
// examples/python, examples/java, examples/rust-tonic, examples/rust-volo)
// behind the real sidecar binary and checks that each frees the session of
// a client that is gone, however it went: a cancelled stream, a killed
// client process, a silent client, a call that ended normally, and
// DisconnectNotify events sent to it directly (a stream event twice, a
// connection event). Each app also has to pass `sidecar notify-check`.
// TestSilentClientBeforeAfter measures the silent client with and without
// the sidecar and logs the table that examples/README.md shows.
// TestInteropMatrix runs the client of each of four stacks (grpc-js, gRPC
// C-core, grpc-java, tonic) against every app through the sidecar: unary,
// streaming, 4 MiB messages each way and a cancelled call.
//
// The apps are built by scripts/install-polyglot.sh; `make test-polyglot`
// runs that and then this suite. An app that is not built fails its test
// with the install command to run.
package polyglot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
)

const (
	// keepaliveTime and keepaliveTimeout are the sidecar's keepalive flags
	// for the suite: a silent client is declared gone after their sum.
	keepaliveTime    = time.Second
	keepaliveTimeout = time.Second
	// silentBound is how soon after a client goes silent its session must be
	// freed: the keepalive time and timeout, plus a second for the event and
	// the app.
	silentBound = keepaliveTime + keepaliveTimeout + time.Second
	// eventBound is how soon a session must be freed after a disconnect the
	// sidecar sees at once (RST_STREAM, TCP close) or a normal end.
	eventBound = 2 * time.Second
	// startTimeout bounds an app's start (a JVM on a busy 2-core machine is
	// the slowest).
	startTimeout = 60 * time.Second
	// holdTimeout bounds how long a new stream may take to hold its session.
	holdTimeout = 10 * time.Second
	// checkTimeout bounds `sidecar notify-check`.
	checkTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(clientEnv); addr != "" {
		os.Exit(runClient(addr))
	}
	code := m.Run()
	if sidecarBin.dir != "" {
		os.RemoveAll(sidecarBin.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runningApp is an example app started by startApp.
type runningApp struct {
	addr       string           // SubscriptionService, host:port
	notifyAddr string           // DisconnectNotify, host:port
	direct     *grpc.ClientConn // to addr, not through the sidecar
	proc       *testtools.Process
}

// startApp starts a's app on free loopback ports, with extra arguments
// after the suite's, and waits until both listen. It is stopped when the
// test ends.
func startApp(t *testing.T, a exampleApp, p paths, extra ...string) *runningApp {
	t.Helper()
	prog, args := a.command(t, p)
	addr, port := freeAddr(t)
	notifyAddr, notifyPort := freeAddr(t)
	args = append(args, "--port", strconv.Itoa(port), "--notify-port", strconv.Itoa(notifyPort))
	args = append(args, extra...)
	proc := testtools.StartProcess(t, context.Background(), prog, args...)
	testtools.WaitTCP(t, addr, startTimeout, proc.Done())
	testtools.WaitTCP(t, notifyAddr, startTimeout, proc.Done())
	return &runningApp{addr: addr, notifyAddr: notifyAddr, direct: dial(t, addr), proc: proc}
}

// startSidecar puts the sidecar in front of app with the suite's keepalive.
func startSidecar(t *testing.T, app *runningApp) *testtools.Sidecar {
	t.Helper()
	return testtools.StartSidecar(t, app.addr,
		"--notify-addr", app.notifyAddr,
		"--keepalive-time", keepaliveTime.String(),
		"--keepalive-timeout", keepaliveTimeout.String())
}

// waitSessions waits until the app holds want sessions and returns how long
// that took; it fails the test if that has not happened within timeout.
func waitSessions(t *testing.T, app *runningApp, want int64, timeout time.Duration) time.Duration {
	t.Helper()
	got, elapsed, err := pollSessions(t.Context(), app, timeout, func(n int64) bool { return n == want })
	if got != want {
		t.Fatalf("app holds %d sessions %s after the disconnect (last error: %v), want %d", got, timeout, err, want)
	}
	return elapsed
}

// pollSessions calls Sessions until done accepts the count or timeout
// passes, and returns the last count, the time taken and the last error.
func pollSessions(ctx context.Context, app *runningApp, timeout time.Duration, done func(int64) bool) (int64, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	got, err := int64(-1), error(nil)
	for {
		if n, e := sessions(ctx, app.direct); e == nil {
			got, err = n, nil
			if done(n) {
				return got, time.Since(start), nil
			}
		} else {
			err = e
		}
		select {
		case <-ctx.Done():
			return got, time.Since(start), err
		case <-tick.C:
		}
	}
}

// scenario is one way a client goes. disconnect makes a client hold one
// more session than base, ends it in its own way and returns; the suite
// then expects the app back at base within bound.
type scenario struct {
	name       string
	bound      time.Duration
	disconnect func(t *testing.T, sidecarAddr string, app *runningApp, base int64)
}

var scenarios = []scenario{
	{name: "cancelled stream", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		if _, _, err := subscribe(ctx, dial(t, addr)); err != nil {
			t.Fatal(err)
		}
		waitSessions(t, app, base+1, holdTimeout)
		cancel() // RST_STREAM(CANCEL) from grpc-go
	}},
	{name: "killed client process", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		client := startClientProcess(t, addr)
		waitSessions(t, app, base+1, holdTimeout)
		if err := client.Cmd.Process.Kill(); err != nil {
			t.Fatalf("kill the client: %v", err)
		}
		<-client.Done()
	}},
	{name: "silent client", bound: silentBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		openSilentStream(t, addr)
		waitSessions(t, app, base+1, holdTimeout)
		// From here on the client reads nothing and answers no PING.
	}},
	{name: "normal end", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		ctx, cancel := context.WithTimeout(t.Context(), holdTimeout)
		defer cancel()
		if err := completeCall(ctx, dial(t, addr)); err != nil {
			t.Fatalf("a Subscribe call through the sidecar: %v", err)
		}
	}},
}

// openSilentStream opens a Subscribe stream on a raw HTTP/2 connection to
// addr, sends one request and then never reads or writes again. The
// connection is closed when the test ends.
func openSilentStream(t *testing.T, addr string) {
	t.Helper()
	c, err := h2raw.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.OpenStream(1, h2raw.GRPCRequest(subscribeMethod)); err != nil {
		t.Fatalf("open a raw Subscribe stream: %v", err)
	}
	if err := c.SendMessage(1, subscribeRequest("silent"), false); err != nil {
		t.Fatalf("send a raw SubscribeRequest: %v", err)
	}
}

// sidecarBin is the sidecar binary the tests of this process share.
var sidecarBin struct {
	once sync.Once
	path string
	dir  string
	err  error
}

// sidecarBinOnce returns a sidecar binary: $HANGUP_SIDECAR_BIN if set,
// otherwise one built once per test process into a directory removed by
// TestMain.
func sidecarBinOnce(t *testing.T) string {
	t.Helper()
	if path := os.Getenv(testtools.SidecarBinEnv); path != "" {
		return testtools.SidecarBin(t)
	}
	sidecarBin.once.Do(func() {
		sidecarBin.dir, sidecarBin.err = os.MkdirTemp("", "hangup-polyglot-")
		if sidecarBin.err != nil {
			return
		}
		path := filepath.Join(sidecarBin.dir, "sidecar")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/sidecar")
		cmd.Dir = testtools.ModuleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			sidecarBin.err = fmt.Errorf("go build ./cmd/sidecar: %w\n%s", err, out)
			return
		}
		sidecarBin.path = path
	})
	if sidecarBin.err != nil {
		t.Fatal(sidecarBin.err)
	}
	return sidecarBin.path
}

func TestDisconnects(t *testing.T) {
	p := newPaths(t)
	sidecarBin := sidecarBinOnce(t)
	t.Setenv(testtools.SidecarBinEnv, sidecarBin) // one build for every app
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) {
			app := startApp(t, a, p)
			sc := startSidecar(t, app)

			// A bystander on its own connection stays subscribed throughout:
			// no disconnect of another client may free it.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, bu, err := subscribe(ctx, dial(t, sc.Addr))
			if err != nil {
				t.Fatalf("bystander: %v", err)
			}
			// The sidecar's incarnation, for notify-check's restart check
			// to name live, so that the bystander stays.
			live, _, _ := strings.Cut(bu.connectionID, "-")
			const base = 1
			waitSessions(t, app, base, holdTimeout)

			for _, s := range append(scenarios, notifyScenarios...) {
				t.Run(s.name, func(t *testing.T) {
					s.disconnect(t, sc.Addr, app, base)
					took := waitSessions(t, app, base, s.bound)
					t.Logf("%s: session freed %s after the disconnect (bound %s)", a.name, took.Round(time.Millisecond), s.bound)
				})
			}

			t.Run("notify-check", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), checkTimeout)
				defer cancel()
				out, err := exec.CommandContext(ctx, sidecarBin, "notify-check", "--target", app.notifyAddr, "--incarnation", live).CombinedOutput()
				if err != nil {
					t.Fatalf("sidecar notify-check --target %s: %v\n%s", app.notifyAddr, err, out)
				}
			})
			// The checks' events name connections the app never saw.
			waitSessions(t, app, base, eventBound)
		})
	}
}
