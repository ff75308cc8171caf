package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
)

// TestRedirectMode proves transparent attachment with real packets, IPv4
// and IPv6, with each backend: in a network namespace the test creates,
// `sidecar init-redirect` installs the redirect (the nftables backend with
// an empty PATH, as in the distroless image), a client in a second
// namespace (behind a veth pair, as a Pod's peers are) dials the app's
// port, and the call demonstrably goes through the sidecar to the loopback
// address of the client's family: the app listens on 127.0.0.1 and on ::1
// only, one instance each, so without the redirect the client could not
// reach it at all, and the instance of the client's family sees the
// sidecar's x-hangup ids. The rules are removed again with --remove.
func TestRedirectMode(t *testing.T) {
	bin := testtools.SidecarBin(t)
	interop := testtools.Bin(t, "grpc-interop-client")
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			testtools.InNetns(t, func(t *testing.T) { redirectMode(t, bin, interop, backend) }, "HANGUP_SIDECAR_BIN="+bin)
		})
	}
}

func redirectMode(t *testing.T, bin, interop, backend string) {
	for _, tool := range []string{"nsenter", "ip", "iptables", "ip6tables", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: run scripts/install-debs.sh: %v", tool, err)
		}
	}
	// The app, one instance per family, on one port of loopback only.
	app4, app6 := demoapp.New(16), demoapp.New(16)
	ln4 := listen(t, "127.0.0.1:0")
	appPort := strconv.Itoa(ln4.Addr().(*net.TCPAddr).Port)
	ln6 := listen(t, "[::1]:"+appPort)
	for _, a := range []struct {
		app *demoapp.App
		ln  net.Listener
	}{{app4, ln4}, {app6, ln6}} {
		gs := grpc.NewServer(a.app.ServerOptions()...)
		a.app.Register(gs)
		serve(t, gs, a.ln)
	}

	// The client's host: a second namespace joined by a veth pair.
	pid := clientHost(t, "hgp")
	env := os.Environ()
	run := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	inHost := func(args ...string) []string { return append([]string{"nsenter", "-t", pid, "-n"}, args...) }

	proxyPort := strconv.Itoa(testtools.FreePort(t))
	initEnv := env
	if backend == "nftables" {
		initEnv = []string{"PATH="} // the distroless image has no tools
	}
	redirect := []string{bin, "init-redirect", "--backend", backend, "--app-port", appPort, "--proxy-port", proxyPort}
	run(initEnv, redirect...)
	sc := testtools.StartSidecar(t, "127.0.0.1:"+appPort, "--mode", "redirect", "--listen", "[::]:"+proxyPort, "--notify-addr", "")

	for _, tc := range []struct {
		family, server, peer string
		app, other           *demoapp.App
	}{
		{"IPv4", "192.0.2.1", "peer=192.0.2.2:", app4, app6},
		{"IPv6", "2001:db8::1", "peer=[2001:db8::2]:", app6, app4},
	} {
		otherBefore := len(tc.other.Calls())
		call := exec.Command("nsenter", inHost(interop, "--server_host", tc.server, "--server_port", appPort,
			"--test_case", "empty_unary")[1:]...)
		if out, err := call.CombinedOutput(); err != nil {
			t.Fatalf("%s client in its own namespace calling %s port %s: %v\n%s\nsidecar:\n%s", tc.family, tc.server, appPort, err, out, sc.Process.Output())
		}
		calls := tc.app.Calls()
		if len(calls) != 1 || calls[0].ConnectionID == "" {
			t.Fatalf("%s: the app on loopback of that family saw %+v, want one call carrying the sidecar's ids", tc.family, calls)
		}
		if n := len(tc.other.Calls()) - otherBefore; n != 0 {
			t.Errorf("%s: the app of the other family saw %d calls, want 0", tc.family, n)
		}
		waitOutput(t, sc.Process, tc.peer) // the connection's log line, once it has closed
	}

	run(initEnv, append(redirect, "--remove")...)
	for _, list := range [][]string{{"iptables", "-t", "nat", "-S"}, {"ip6tables", "-t", "nat", "-S"}, {"nft", "list", "ruleset"}} {
		out, err := exec.Command(list[0], list[1:]...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "HANGUP_INBOUND") || strings.Contains(string(out), "table inet hangup") {
			t.Fatalf("rules left after --remove (%s: %v):\n%s", strings.Join(list, " "), err, out)
		}
	}
}

// clientHost makes a second network namespace, the clients' host, joined to
// this one by a veth pair named prefix+"0" (here) and prefix+"1" (there):
// 192.0.2.1 and 2001:db8::1 here, 192.0.2.2 and 2001:db8::2 there. It
// returns the pid of the process that holds it until the test ends.
func clientHost(t *testing.T, prefix string) string {
	t.Helper()
	host := testtools.StartProcess(t, context.Background(), "unshare", "-n", "sleep", "300")
	pid := strconv.Itoa(host.Cmd.Process.Pid)
	waitForNetns(t, pid)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	inHost := func(args ...string) []string { return append([]string{"nsenter", "-t", pid, "-n"}, args...) }
	here, there := prefix+"0", prefix+"1"
	run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
	run("ip", "link", "set", there, "netns", pid)
	run("ip", "addr", "add", "192.0.2.1/24", "dev", here)
	run("ip", "addr", "add", "2001:db8::1/64", "dev", here, "nodad")
	run("ip", "link", "set", here, "up")
	run(inHost("ip", "link", "set", "lo", "up")...)
	run(inHost("ip", "addr", "add", "192.0.2.2/24", "dev", there)...)
	run(inHost("ip", "addr", "add", "2001:db8::2/64", "dev", there, "nodad")...)
	run(inHost("ip", "link", "set", there, "up")...)
	return pid
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
