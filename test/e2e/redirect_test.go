package e2e

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
)

// TestRedirectMode proves transparent attachment with real packets: in a
// network namespace the test creates, `sidecar init-redirect` installs the
// REDIRECT rule, a client in a second namespace (behind a veth pair, as a
// Pod's peers are) dials the app's port, and the call demonstrably goes
// through the sidecar — the app listens on 127.0.0.1 only, so without the
// redirect the client could not reach it at all, and the app sees the
// sidecar's x-hangup ids. The rule is removed again with --remove.
func TestRedirectMode(t *testing.T) {
	bin := testtools.SidecarBin(t)
	interop := testtools.Bin(t, "grpc-interop-client")
	testtools.InNetns(t, func(t *testing.T) {
		for _, tool := range []string{"iptables-restore", "nsenter", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Fatalf("%s is needed: run scripts/install-debs.sh: %v", tool, err)
			}
		}
		// The app, on a fixed port of loopback only.
		app := demoapp.New(16)
		gs := grpc.NewServer(app.ServerOptions()...)
		app.Register(gs)
		ln := listen(t, "127.0.0.1:0")
		serve(t, gs, ln)
		appPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

		// The client's host: a second namespace joined by a veth pair.
		host := testtools.StartProcess(t, context.Background(), "unshare", "-n", "sleep", "120")
		pid := strconv.Itoa(host.Cmd.Process.Pid)
		run := func(args ...string) {
			t.Helper()
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		inHost := func(args ...string) []string { return append([]string{"nsenter", "-t", pid, "-n"}, args...) }
		waitForNetns(t, pid)
		run("ip", "link", "add", "hgp0", "type", "veth", "peer", "name", "hgp1")
		run("ip", "link", "set", "hgp1", "netns", pid)
		run("ip", "addr", "add", "192.0.2.1/24", "dev", "hgp0")
		run("ip", "link", "set", "hgp0", "up")
		run(inHost("ip", "link", "set", "lo", "up")...)
		run(inHost("ip", "addr", "add", "192.0.2.2/24", "dev", "hgp1")...)
		run(inHost("ip", "link", "set", "hgp1", "up")...)

		proxyPort := strconv.Itoa(testtools.FreePort(t))
		run(bin, "init-redirect", "--app-port", appPort, "--proxy-port", proxyPort)
		sc := testtools.StartSidecar(t, "127.0.0.1:"+appPort, "--mode", "redirect", "--listen", "0.0.0.0:"+proxyPort, "--notify-addr", "")

		call := exec.Command("nsenter", inHost(interop, "--server_host", "192.0.2.1", "--server_port", appPort,
			"--test_case", "empty_unary")[1:]...)
		if out, err := call.CombinedOutput(); err != nil {
			t.Fatalf("client in its own namespace calling 192.0.2.1:%s: %v\n%s\nsidecar:\n%s", appPort, err, out, sc.Process.Output())
		}
		calls := app.Calls()
		if len(calls) != 1 || calls[0].ConnectionID == "" {
			t.Fatalf("app saw %+v, want one call carrying the sidecar's ids", calls)
		}
		waitOutput(t, sc.Process, "peer=192.0.2.2:") // the connection's log line, once it has closed

		run(bin, "init-redirect", "--remove", "--app-port", appPort, "--proxy-port", proxyPort)
		out, err := exec.Command("iptables", "-t", "nat", "-S").CombinedOutput()
		if err != nil || strings.Contains(string(out), "HANGUP_INBOUND") {
			t.Fatalf("rules left after --remove (%v):\n%s", err, out)
		}
	}, "HANGUP_SIDECAR_BIN="+bin)
}

// waitForNetns waits until process pid has left this network namespace
// (unshare has made its own).
func waitForNetns(t *testing.T, pid string) {
	t.Helper()
	self, _ := exec.Command("readlink", "/proc/self/ns/net").Output()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		theirs, err := exec.Command("readlink", "/proc/"+pid+"/ns/net").Output()
		if err == nil && string(theirs) != string(self) {
			return
		}
		<-tick.C
	}
	t.Fatalf("process %s never entered its own network namespace", pid)
}

// waitOutput waits until p has written want.
func waitOutput(t *testing.T, p *testtools.Process, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.Output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never wrote %q:\n%s", p.Name, want, p.Output())
		}
		<-tick.C
	}
}
