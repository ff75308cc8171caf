// Package testtools is shared support for hangup's tests that run real
// peers: the pinned third-party tools built by scripts/install-tools.sh,
// loopback ports, child processes whose output is shown when a test fails,
// the sidecar binary, and private network namespaces.
//
// It is an ordinary package (not a _test file) so that tests in every
// package can import it; nothing outside tests should.
package testtools

import (
	"os"
	"path/filepath"
	"testing"
)

// CacheDir returns the directory scripts/install-tools.sh builds into:
// $HANGUP_CACHE if set, else $HOME/.cache/hangup.
func CacheDir() (string, error) {
	if dir := os.Getenv("HANGUP_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "hangup"), nil
}

// Bin returns the path of the cached tool name (for example "h2spec" or
// "grpc-interop-server"). A missing tool fails the test, telling how to
// build it: tools are never built implicitly, because a cold build takes
// minutes and would blow the test's time budget instead.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir, err := CacheDir()
	if err != nil {
		t.Fatalf("find the tool cache (set HANGUP_CACHE): %v", err)
	}
	path := filepath.Join(dir, "bin", name)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("tool %s is not installed (%v): run scripts/install-tools.sh %s", name, err, name)
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("tool %s at %s is not an executable file: run scripts/install-tools.sh %s", name, path, name)
	}
	return path
}
