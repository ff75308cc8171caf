//go:build !unix

package e2e

import (
	"os"
	"testing"
)

// silence needs SIGSTOP, which this system does not have.
func silence(t *testing.T, _ *os.Process) {
	t.Helper()
	t.Skip("a silent client is made with SIGSTOP, which needs a unix system")
}
