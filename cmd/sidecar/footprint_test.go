//go:build !hangup_pod

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
)

// podBinaryLimit is issue 15's budget for what runs in the app's pod.
const podBinaryLimit = 20 << 20

// buildSidecar builds this command as the images do (static, stripped),
// with the given build tags, into dir, and returns the binary's path.
func buildSidecar(tb testing.TB, dir, tags string) string {
	tb.Helper()
	out := filepath.Join(dir, "sidecar"+strings.ReplaceAll(tags, ",", "_"))
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out
}

// TestPodBinary checks that the hangup_pod build, the binary of the hangup
// image that every injected pod runs, stays within issue 15's 20 MB and
// links neither a Kubernetes client nor the interop test protos (what
// made the one binary 45 MB and doubled its idle RSS).
func TestPodBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pod binary")
	}
	bin := buildSidecar(t, t.TempDir(), "hangup_pod")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod binary: %.1f MB", float64(st.Size())/(1<<20))
	if st.Size() > podBinaryLimit {
		t.Errorf("pod binary is %d bytes, over the %d byte budget: see what `go list -deps -tags hangup_pod ./cmd/sidecar` added", st.Size(), podBinaryLimit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deps, err := exec.CommandContext(ctx, "go", "list", "-deps", "-tags", "hangup_pod", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, banned := range []string{"k8s.io/client-go", "k8s.io/apimachinery", "google.golang.org/grpc/interop", "github.com/hangup-dev/hangup/pkg/inject"} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") {
				t.Errorf("pod binary links %s: the pod's commands must not import it (it belongs to the tools build)", pkg)
			}
		}
	}
}

// procStatus reads the kB figures (and Threads) of /proc/PID/status.
func procStatus(tb testing.TB, pid int) map[string]float64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// footprintSettle is how long an idle proxy runs after /readyz before its
// memory is read: start-up work (the first health dials, the admin
// server's first requests) is over, so the figure is the steady idle one.
const footprintSettle = 3 * time.Second

// footprintProbes is how many rounds of kubelet probes and a Prometheus
// scrape the probed working set is measured over.
const footprintProbes = 5

// idleFootprint runs bin as an idle `sidecar proxy`, with the extra
// flags, in front of a listener that accepts nothing and with a
// DisconnectNotify receiver, waits for /readyz,
// lets it settle and returns its /proc status, plus "ProbedFile": the kB
// of the binary that
// rounds of /healthz, /readyz and /metrics touch (the pages an idle pod
// keeps using; the rest of RssFile is start-up and the kernel's
// fault-around, clean page cache that memory pressure reclaims first).
func idleFootprint(b *testing.B, bin string, extra ...string) map[string]float64 {
	b.Helper()
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	// The app's DisconnectNotify server, as in a pod: the sidecar
	// delivers its start-up event to it.
	nln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(gs, demoapp.NewReceiver(16))
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(nln) }()
	defer func() { gs.Stop(); <-served }()
	admin := freeAddr(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"proxy", "--listen", freeAddr(b), "--upstream", app.Addr().String(),
		"--admin", admin, "--notify-addr", nln.Addr().String(), "--log-level", "error"}
	cmd := exec.CommandContext(ctx, bin, append(args, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%s proxy never ready: %v", bin, err)
		case <-tick.C:
		}
	}
	select {
	case <-ctx.Done():
		b.Fatal(ctx.Err())
	case <-time.After(footprintSettle):
	}
	st := procStatus(b, cmd.Process.Pid)
	pid := cmd.Process.Pid
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("1"), 0); err != nil {
		b.Fatalf("clear_refs: %v", err)
	}
	for range footprintProbes {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := hc.Get("http://" + admin + path)
			if err != nil {
				b.Fatalf("%s: %v", path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	st["ProbedFile"] = testtools.SmapsKB(b, pid, bin, "Referenced")
	return st
}

// BenchmarkIdleFootprint reports the pod binary's size and idle memory
// (RssAnon: the Go heap and stacks; RssFile: the mapped binary) beside
// the full tools build's, measured in the same run, and their ratios; and
// the pod binary's with --release-startup-pages=false, the baseline of
// that lever.
// Run: go test -run '^$' -bench IdleFootprint -benchtime 1x ./cmd/sidecar
func BenchmarkIdleFootprint(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/PID/status")
	}
	dir := b.TempDir()
	pod, full := buildSidecar(b, dir, "hangup_pod"), buildSidecar(b, dir, "")
	var ps, fs, ks map[string]float64
	b.ResetTimer()
	for range b.N {
		ps, fs = idleFootprint(b, pod), idleFootprint(b, full)
		ks = idleFootprint(b, pod, "--release-startup-pages=false")
	}
	b.StopTimer()
	size := func(p string) float64 {
		st, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		return float64(st.Size()) / (1 << 20)
	}
	b.ReportMetric(size(pod), "pod-binary-MB")
	b.ReportMetric(size(full), "full-binary-MB")
	for _, k := range []string{"VmRSS", "RssAnon", "RssFile"} {
		b.ReportMetric(ps[k]/1024, "pod-"+k+"-MB")
		b.ReportMetric(fs[k]/1024, "full-"+k+"-MB")
	}
	b.ReportMetric(ps["ProbedFile"]/1024, "pod-probed-file-MB")
	b.ReportMetric(ks["VmRSS"]/1024, "pod-kept-VmRSS-MB")
	b.ReportMetric(ks["RssFile"]/1024, "pod-kept-RssFile-MB")
	b.ReportMetric(ps["VmRSS"]/fs["VmRSS"], "pod/full-VmRSS")
	b.ReportMetric(ps["VmRSS"]/ks["VmRSS"], "released/kept-VmRSS")
	b.ReportMetric(ps["Threads"], "pod-threads")
	b.ReportMetric(fs["Threads"], "full-threads")
}
