package polyglot

import (
	"github.com/hangup-dev/hangup/internal/testtools"

	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSilentClientBeforeAfter measures the silent-client case against each
// app twice: with the client connected straight to the app, where nothing
// notices the silence and the session is still held when silentBound
// expires, and through the sidecar, where it is freed within silentBound.
// It logs a Markdown table of both (go test -v -run SilentClientBeforeAfter).
func TestSilentClientBeforeAfter(t *testing.T) {
	p := newPaths(t)
	t.Setenv(testtools.SidecarBinEnv, sidecarBinOnce(t))
	var rows []string
	for _, a := range apps {
		t.Run(a.name, func(t *testing.T) {
			without, with := "not measured", "not measured"
			defer func() { rows = append(rows, fmt.Sprintf("| %s | %s | %s |", a.name, without, with)) }()

			direct := startApp(t, a, p)
			openSilentStream(t, direct.addr)
			waitSessions(t, direct, 1, holdTimeout)
			got, _, err := pollSessions(t.Context(), direct, silentBound, func(n int64) bool { return n != 1 })
			if got != 1 {
				t.Errorf("without the sidecar the app holds %d sessions (last error: %v), want the silent client's session still held after %s", got, err, silentBound)
				without = fmt.Sprintf("%d sessions after %s", got, silentBound)
			} else {
				without = fmt.Sprintf("still held after %s", silentBound)
			}

			app := startApp(t, a, p)
			sc := startSidecar(t, app)
			openSilentStream(t, sc.Addr)
			waitSessions(t, app, 1, holdTimeout)
			took := waitSessions(t, app, 0, silentBound)
			with = fmt.Sprintf("freed after %s", took.Round(10*time.Millisecond))
		})
	}
	t.Logf("silent client (keepalive %s + timeout %s, bound %s):\n\n| app | without the sidecar | with the sidecar |\n| --- | --- | --- |\n%s\n",
		keepaliveTime, keepaliveTimeout, silentBound, strings.Join(rows, "\n"))
}
