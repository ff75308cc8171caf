package polyglot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// exampleApp is one language's implementation of
// hangup.example.v1.SubscriptionService plus DisconnectNotify.
type exampleApp struct {
	// name is the subtest's name and the argument of
	// scripts/install-polyglot.sh that builds the app.
	name string
	// command returns the program and its leading arguments; the suite
	// appends --port and --notify-port. It fails the test, naming the install
	// command, when the app or its toolchain is not there.
	command func(t *testing.T, p paths) (string, []string)
}

// paths are the places the install script builds into.
type paths struct {
	root  string // the hangup module
	cache string // $HANGUP_CACHE
}

// apps are every language the suite covers, in the order they run.
var apps = []exampleApp{
	{name: "node", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		node := lookPath(t, "node", "node")
		need(t, "node", filepath.Join(p.root, "examples/node/node_modules/@grpc/grpc-js/package.json"))
		return node, []string{filepath.Join(p.root, "examples/node/server.js")}
	}},
	{name: "python", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		python := need(t, "python", filepath.Join(p.cache, "polyglot/python/venv/bin/python"))
		need(t, "python", filepath.Join(p.root, "examples/python/gen/hangup/example/v1/subscription_pb2_grpc.py"))
		return python, []string{filepath.Join(p.root, "examples/python/server.py")}
	}},
	{name: "java", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		java := lookPath(t, "java", "java")
		jar := need(t, "java", filepath.Join(p.cache, "polyglot/java/hangup-example-java.jar"))
		return java, []string{"-jar", jar}
	}},
	{name: "rust-tonic", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		return need(t, "rust-tonic", filepath.Join(p.cache, "rust/target/release/hangup-example-tonic")), nil
	}},
	{name: "rust-volo", command: func(t *testing.T, p paths) (string, []string) {
		t.Helper()
		return need(t, "rust-volo", filepath.Join(p.cache, "rust/target/release/hangup-example-volo")), nil
	}},
}

// need returns path if it exists and fails the test naming the install
// command otherwise: a missing language is a failure, never a skip, so that
// CI cannot pass without having run it.
func need(t *testing.T, lang, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s example is not built (%v): run scripts/install-polyglot.sh %s (or make test-polyglot)", lang, err, lang)
	}
	return path
}

// lookPath finds a toolchain program or fails naming what to install.
func lookPath(t *testing.T, lang, prog string) string {
	t.Helper()
	path, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s toolchain: %v: install %s, then run scripts/install-polyglot.sh %s", lang, err, prog, lang)
	}
	return path
}

// newPaths finds the module root and the cache.
func newPaths(t *testing.T) paths {
	t.Helper()
	cache, err := testtools.CacheDir()
	if err != nil {
		t.Fatalf("find the cache (set HANGUP_CACHE): %v", err)
	}
	return paths{root: testtools.ModuleRoot(t), cache: cache}
}
