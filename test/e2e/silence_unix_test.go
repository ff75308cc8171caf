//go:build unix

package e2e

import (
	"os"
	"syscall"
	"testing"
)

// silence stops p (SIGSTOP): its sockets stay open and nothing answers,
// as for a phone that lost its network.
func silence(t *testing.T, p *os.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP the client: %v", err)
	}
}
