package testtools

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// netnsEnv marks a test process that InNetns started inside a private
// network namespace.
const netnsEnv = "HANGUP_TEST_IN_NETNS"

// netnsScript brings loopback up in the fresh namespace (it starts down)
// and then becomes the test binary.
const netnsScript = `ip link set lo up && exec "$0" "$@"`

// InNetns runs body inside a private network namespace that has only a
// loopback interface, for peers that cannot be told to bind 127.0.0.1 (the
// grpc-go interop server listens on every interface). Everything body
// starts (servers, the sidecar, clients) shares that one namespace and
// cannot be reached from, or collide with, anything outside it.
//
// It works by re-executing the test binary for exactly t.Name() under
// "unshare -n" (plus -r, a user namespace, when not root); in that child
// process InNetns calls body directly. The child's output is logged, and
// its failure fails t. Code in the test before InNetns runs in both
// processes, so keep it cheap and deterministic, and hand results such as a
// built binary's path to the child through env ("NAME=value" entries added
// to the child's environment). A machine that cannot create network
// namespaces fails the test with a message saying so.
func InNetns(t *testing.T, body func(t *testing.T), env ...string) {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		body(t)
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary to re-run in a network namespace: %v", err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("this test needs a private network namespace, but unshare (util-linux) is not installed: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test needs a private network namespace, but ip (iproute2) is not installed: %v", err)
	}

	timeout := 5 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		// Leave the parent a little time to report the child's result.
		timeout = time.Until(deadline) - 5*time.Second
		if timeout <= 0 {
			t.Fatalf("no time left to run %s in a network namespace", t.Name())
		}
	}
	unshare := []string{"-n"}
	if os.Geteuid() != 0 {
		unshare = []string{"-r", "-n"}
	}
	args := append(unshare, "sh", "-c", netnsScript, self,
		"-test.run", runPattern(t.Name()),
		"-test.v",
		"-test.count", "1",
		"-test.timeout", timeout.String(),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(append(os.Environ(), env...), netnsEnv+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	text := indent(out.String())
	switch {
	case err == nil && !strings.Contains(out.String(), "--- PASS: "+t.Name()):
		// The pattern matched nothing: a bug in runPattern, not a pass.
		t.Fatalf("the re-run of %s in a network namespace did not run it:\n%s", t.Name(), text)
	case err == nil:
		t.Logf("run in a private network namespace:\n%s", text)
	case strings.Contains(out.String(), "unshare: "):
		t.Fatalf("cannot create a network namespace (needs root, CAP_SYS_ADMIN or unprivileged user namespaces): %v\n%s", err, text)
	default:
		t.Fatalf("%s failed in its network namespace: %v\n%s", t.Name(), err, text)
	}
}

// runPattern turns a test name such as "TestX/sub" into a -test.run
// pattern that matches exactly that test and nothing else.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(&b, "    | %s\n", line)
	}
	return b.String()
}
