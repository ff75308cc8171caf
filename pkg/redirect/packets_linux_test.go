//go:build linux

package redirect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// TestRealPackets runs `sidecar init-redirect` in a network namespace the
// test creates and sends real TCP connections, IPv4 and IPv6, from a second
// namespace behind a veth pair (as a Pod's peers are). Each listener answers
// with its own name, so the test sees where every connection landed: the
// sidecar's port for redirected ones, the dialled port for excluded ones
// and, after --remove, everywhere again. The nftables backend runs with an
// EMPTY PATH: it needs nothing from the image but the binary. --remove must
// restore the rules exactly as they were, a foreign table included.
func TestRealPackets(t *testing.T) {
	bin := testtools.SidecarBin(t)
	for _, b := range []Backend{BackendNFTables, BackendIPTables} {
		t.Run(string(b), func(t *testing.T) {
			testtools.InNetns(t, func(t *testing.T) { realPackets(t, bin, b) }, testtools.SidecarBinEnv+"="+bin)
		})
	}
}

func realPackets(t *testing.T, bin string, backend Backend) {
	client := clientNetns(t)

	// One listener per role, dual-stack on every address of the pod.
	const (
		appPort, metricsPort, otherPort, proxyPort, adminPort = 18080, 19090, 17070, 16006, 16020
	)
	for name, port := range map[string]int{"app": appPort, "metrics": metricsPort, "other": otherPort, "proxy": proxyPort, "admin": adminPort} {
		nameListener(t, name, port)
	}

	env := []string{"PATH="} // nothing to run: the nftables backend needs no tool
	if backend == BackendIPTables {
		env = []string{"PATH=" + os.Getenv("PATH")}
	}
	snapshot := rulesSnapshot(t, backend)
	initRedirect := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"init-redirect", "--backend=" + string(backend), "--log-format=text",
			fmt.Sprintf("--app-port=%d", appPort)}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("init-redirect %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "backend="+string(backend)) {
			t.Errorf("init-redirect did not log its backend:\n%s", out)
		}
	}
	initRedirect("--exclude-ports=19090", "--exclude-cidrs=198.51.100.0/24,2001:db8:1::/48")
	initRedirect("--exclude-ports=19090", "--exclude-cidrs=198.51.100.0/24,2001:db8:1::/48") // a restarted init container

	tests := []struct {
		name, src, dst string
		port           int
		want           string
	}{
		{"v4 app port", "192.0.2.2", "192.0.2.1", appPort, "proxy"},
		{"v6 app port", "2001:db8::2", "2001:db8::1", appPort, "proxy"},
		{"v4 other port", "192.0.2.2", "192.0.2.1", otherPort, "proxy"},
		{"v6 other port", "2001:db8::2", "2001:db8::1", otherPort, "proxy"},
		{"v4 excluded port", "192.0.2.2", "192.0.2.1", metricsPort, "metrics"},
		{"v6 excluded port", "2001:db8::2", "2001:db8::1", metricsPort, "metrics"},
		{"v4 admin port", "192.0.2.2", "192.0.2.1", adminPort, "admin"},
		{"v4 excluded source", "198.51.100.2", "198.51.100.1", appPort, "app"},
		{"v6 excluded source", "2001:db8:1::2", "2001:db8:1::1", appPort, "app"},
	}
	for _, tc := range tests {
		if got := dialFrom(t, client, tc.src, tc.dst, tc.port); got != tc.want {
			t.Errorf("%s: %s -> [%s]:%d reached %q, want %q", tc.name, tc.src, tc.dst, tc.port, got, tc.want)
		}
	}

	initRedirect("--ipv6=false")
	if got := dialFrom(t, client, "2001:db8::2", "2001:db8::1", appPort); got != "app" {
		t.Errorf("--ipv6=false: an IPv6 connection reached %q, want the app", got)
	}
	if got := dialFrom(t, client, "192.0.2.2", "192.0.2.1", appPort); got != "proxy" {
		t.Errorf("--ipv6=false: an IPv4 connection reached %q, want the proxy", got)
	}

	initRedirect("--remove")
	initRedirect("--remove") // nothing left to remove: still fine
	if got := rulesSnapshot(t, backend); got != snapshot {
		t.Errorf("--remove did not restore the rules:\nbefore:\n%s\nafter:\n%s", snapshot, got)
	}
	for _, dst := range [][2]string{{"192.0.2.2", "192.0.2.1"}, {"2001:db8::2", "2001:db8::1"}} {
		if got := dialFrom(t, client, dst[0], dst[1], appPort); got != "app" {
			t.Errorf("after --remove %s reached %q, want the app", dst[1], got)
		}
	}
}

// clientNetns makes the clients' namespace, joined to this one by a veth
// pair, and returns its /proc path. Addresses: 192.0.2.0/24 and
// 2001:db8::/64 redirected, 198.51.100.0/24 and 2001:db8:1::/64 excluded.
func clientNetns(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"ip", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/install-debs.sh): %v", tool, err)
		}
	}
	host := testtools.StartProcess(t, context.Background(), "unshare", "-n", "sleep", "300")
	pid := strconv.Itoa(host.Cmd.Process.Pid)
	waitOwnNetns(t, pid)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	inClient := func(args ...string) { t.Helper(); run(append([]string{"-n", "hgc"}, args...)...) }
	// ip -n needs a named namespace: name the client's for this test.
	run("netns", "attach", "hgc", pid)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", "hgc").Run() })
	run("link", "add", "hgr0", "type", "veth", "peer", "name", "hgr1", "netns", "hgc")
	for _, a := range []string{"192.0.2.1/24", "198.51.100.1/24"} {
		run("addr", "add", a, "dev", "hgr0")
	}
	for _, a := range []string{"2001:db8::1/64", "2001:db8:1::1/64"} {
		run("addr", "add", a, "dev", "hgr0", "nodad")
	}
	run("link", "set", "hgr0", "up")
	inClient("link", "set", "lo", "up")
	for _, a := range []string{"192.0.2.2/24", "198.51.100.2/24"} {
		inClient("addr", "add", a, "dev", "hgr1")
	}
	for _, a := range []string{"2001:db8::2/64", "2001:db8:1::2/64"} {
		inClient("addr", "add", a, "dev", "hgr1", "nodad")
	}
	inClient("link", "set", "hgr1", "up")
	return "/proc/" + pid + "/ns/net"
}

// waitOwnNetns waits until process pid has its own network namespace.
func waitOwnNetns(t *testing.T, pid string) {
	t.Helper()
	self, _ := os.Readlink("/proc/self/ns/net")
	deadline := time.Now().Add(5 * time.Second)
	for {
		theirs, err := os.Readlink("/proc/" + pid + "/ns/net")
		if err == nil && theirs != self {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %s never entered its own network namespace", pid)
		}
		runtime.Gosched()
	}
}

// nameListener accepts on [::]:port (IPv4 too) and writes name to every
// connection.
func nameListener(t *testing.T, name string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		t.Fatalf("listen for %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name + "\n"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
}

// dialFrom connects from src in the namespace at nsPath to dst:port and
// returns the name the listener wrote. The socket is made on a thread that
// has entered that namespace; it stays there once the thread returns.
func dialFrom(t *testing.T, nsPath, src, dst string, port int) string {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := testtools.DialInNetns(context.Background(), nsPath, &d, "tcp", net.JoinHostPort(dst, strconv.Itoa(port)))
	if err != nil {
		return "dial error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return "read error: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// rulesSnapshot returns what the backend's rules are now. A foreign table
// (nftables) or chain (iptables) is added first, so that --remove is shown
// to leave it alone.
func rulesSnapshot(t *testing.T, b Backend) string {
	t.Helper()
	if b == BackendIPTables {
		var out strings.Builder
		for _, tool := range []string{"iptables", "ip6tables"} {
			_ = exec.Command(tool, "-t", "nat", "-N", "KEEP_ME").Run()
			b, err := exec.Command(tool, "-t", "nat", "-S").CombinedOutput()
			if err != nil {
				t.Fatalf("%s -t nat -S: %v\n%s", tool, err, b)
			}
			out.Write(b)
		}
		return out.String()
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	keep := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "keep_me"})
	c.AddChain(&nftables.Chain{Name: "input", Table: keep, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, ch := range chains {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("family %d table %s chain %s: %d rules", ch.Table.Family, ch.Table.Name, ch.Name, len(rules)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
