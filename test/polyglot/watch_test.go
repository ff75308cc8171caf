package polyglot

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// watchApps are the examples with a pull mode (--watch IP:PORT): they read
// the events from the sidecar's DisconnectWatch service as clients. The Go
// example has one too, tested behind the real sidecar in its own package
// (examples/go), since it serves a different service from the suite's.
var watchApps = map[string]bool{"rust-volo": true}

// TestWatchMode runs each example with a pull mode behind the sidecar with
// push off (--notify-addr "") and pull on: every client disconnect of the
// suite must free its session, the events must have reached the app
// through Watch, and the app's watcher must pass `sidecar notify-check
// --watch-listen` once the sidecar is gone (it resumes with its position,
// moves past a gap and follows a new incarnation).
func TestWatchMode(t *testing.T) {
	p := newPaths(t)
	sidecarBin := sidecarBinOnce(t)
	t.Setenv(testtools.SidecarBinEnv, sidecarBin)
	ran := 0
	for _, a := range apps {
		if !watchApps[a.name] {
			continue
		}
		ran++
		t.Run(a.name, func(t *testing.T) {
			watchAddr, _ := freeAddr(t)
			app := startApp(t, a, p, "--watch", watchAddr)
			sc := testtools.StartSidecar(t, app.addr,
				"--notify-addr", "",
				"--watch-addr", watchAddr,
				"--keepalive-time", keepaliveTime.String(),
				"--keepalive-timeout", keepaliveTimeout.String())

			for _, s := range scenarios {
				t.Run(s.name, func(t *testing.T) {
					s.disconnect(t, sc.Addr, app, 0)
					took := waitSessions(t, app, 0, s.bound)
					t.Logf("%s --watch: session freed %s after the disconnect (bound %s)", a.name, took.Round(time.Millisecond), s.bound)
				})
			}
			// Push is off: every event the app reports came through Watch.
			for _, want := range []string{"SCOPE_STREAM REASON_RST_STREAM", "SCOPE_STREAM REASON_KEEPALIVE_TIMEOUT"} {
				if !watchedLine(app.proc.Output(), want) {
					t.Errorf("the app logged no watched %s event (cancelled stream, silent client); its output:\n%s", want, app.proc.Output())
				}
			}

			t.Run("notify-check --watch-listen", func(t *testing.T) {
				// The check plays the sidecar's Watch on the same address.
				_ = sc.Process.Cmd.Process.Kill()
				<-sc.Process.Done()
				ctx, cancel := context.WithTimeout(t.Context(), 2*checkTimeout)
				defer cancel()
				out, err := exec.CommandContext(ctx, sidecarBin, "notify-check", "--watch-listen", watchAddr,
					"--watch-timeout", checkTimeout.String()).CombinedOutput()
				if err != nil {
					t.Fatalf("sidecar notify-check --watch-listen %s: %v\n%s", watchAddr, err, out)
				}
				t.Logf("%s", out)
			})
		})
	}
	if ran == 0 {
		t.Fatal("no example with a pull mode is in the suite's apps")
	}
}

// watchedLine reports whether out has a "watched event" line with want
// (scope and reason) in it.
func watchedLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "watched event") && strings.Contains(l, want) {
			return true
		}
	}
	return false
}
