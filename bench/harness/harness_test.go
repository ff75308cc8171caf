//go:build linux

package harness

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	RunChildIfAsked() // the killed-client scenario re-runs this binary
	goleak.VerifyTestMain(m)
}

// TestShortRun runs the harness in its shortest mode against the peers that
// need nothing but Go and h2load, so that it cannot rot: every scenario must
// produce a figure and the report and its charts must be written.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for about 30s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := Run(ctx, Options{
		Peers:    []string{Direct, TCPRelay, Hangup},
		Duration: time.Second,
		Conns:    []int{50},
		Short:    true,
		Log:      &log,
	})
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
	}
	if len(res.Peers) != 3 {
		t.Fatalf("got results for %d peers, want 3", len(res.Peers))
	}
	for _, p := range res.Peers {
		if len(p.Errors) > 0 {
			t.Errorf("%s: failed scenarios:\n%s", p.Name, strings.Join(p.Errors, "\n"))
		}
		if p.Saturation.PerSecond <= 0 {
			t.Errorf("%s: saturation %v calls/s, want > 0", p.Name, p.Saturation.PerSecond)
		}
		if len(p.Latency) != len(LatencyFractions) {
			t.Errorf("%s: %d latency runs, want %d", p.Name, len(p.Latency), len(LatencyFractions))
		}
		if u := p.Unloaded; u.P50 <= 0 || u.P999 < u.P50 {
			t.Errorf("%s: one call at a time: p50 %s p99.9 %s, want 0 < p50 <= p99.9", p.Name, u.P50, u.P999)
		}
		for _, l := range p.Latency {
			if l.P50 <= 0 || l.P999 < l.P50 {
				t.Errorf("%s: latency at %.0f calls/s: p50 %s p99.9 %s, want 0 < p50 <= p99.9", p.Name, l.TargetRPS, l.P50, l.P999)
			}
		}
		if p.Large.BytesPS <= 0 || p.Small.MsgPerSec <= 0 {
			t.Errorf("%s: streaming %v B/s, %v msg/s, want both > 0", p.Name, p.Large.BytesPS, p.Small.MsgPerSec)
		}
		if p.Name != Direct {
			if p.CPUPerMillion <= 0 {
				t.Errorf("%s: CPU per million calls %v, want > 0", p.Name, p.CPUPerMillion)
			}
			if p.Large.CPUPerGiB <= 0 {
				t.Errorf("%s: CPU per GiB streamed %v, want > 0", p.Name, p.Large.CPUPerGiB)
			}
			if len(p.Memory) != 1 {
				t.Errorf("%s: %d memory results, want 1", p.Name, len(p.Memory))
			} else if m := p.Memory[0]; m.IdleRSSBytes <= 0 || m.IdleThreads <= 0 {
				t.Errorf("%s: idle footprint %d bytes, %d threads, want both > 0", p.Name, m.IdleRSSBytes, m.IdleThreads)
			}
		}
		if p.Name == Hangup && (p.Traced == nil || p.Traced.Saturation.PerSecond <= 0 || p.Traced.Spans <= 0) {
			t.Errorf("hangup with tracing always on: %+v, want calls and spans", p.Traced)
		}
	}
	if res.SidecarBinaryBytes <= 0 {
		t.Errorf("sidecar binary size %d, want > 0", res.SidecarBinaryBytes)
	}
	if res.Notify == nil {
		t.Fatalf("no notify results: %s", res.NotifyErr)
	}
	if res.Notify.RSTp50 <= 0 || res.Notify.KillP50 <= 0 || res.Notify.BurstEventsPerS <= 0 {
		t.Errorf("notify results %+v, want every figure > 0", *res.Notify)
	}
	for _, d := range []struct {
		name              string
		delivery, overall time.Duration
	}{
		{"RST_STREAM p99", res.Notify.RSTDeliveryP99, res.Notify.RSTp99},
		{"killed client p99", res.Notify.KillDeliveryP99, res.Notify.KillP99},
	} {
		if d.delivery <= 0 || d.delivery > d.overall {
			t.Errorf("%s: %v after detection, of %v in all: want a part of it", d.name, d.delivery, d.overall)
		}
	}

	if res.Paired == nil || len(res.Paired.Rounds) != 2 {
		t.Fatalf("interleaved rounds %+v (%s), want 2", res.Paired, res.PairedErr)
	}
	for i, r := range res.Paired.Rounds {
		for _, v := range []float64{throughputRatio(r), cpuRatio(r), tracingRatio(r), streamingRatio(r)} {
			if !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("round %d: %+v, want every figure > 0", i+1, r)
				break
			}
		}
	}

	dir := t.TempDir()
	res.Command = "go test ./bench/harness"
	if err := WriteReport(res, dir); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| hangup |", "| tcprelay |", "p99.9", "events/s", "Idle footprint", "tracing always on", "≤ 10 MiB", chartLatency, chartMemory} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("BENCHMARKS.md lacks %q", want)
		}
	}
	for _, chart := range []string{chartLatency, chartThroughput, chartStreaming, chartMemory} {
		b, err := os.ReadFile(filepath.Join(dir, chart))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", chart)
		}
	}
}

// TestMissingPeer: a peer that is not installed fails at once with the
// command that installs it.
func TestMissingPeer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct{ name, want string }{
		{"h2load", "scripts/install-debs.sh (Debian package nghttp2-client)"},
		{"no-such-proxy", "is not installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := findBin(tc.name)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("findBin(%q) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestReadH2loadLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.tsv")
	log := "1700000000000000\t200\t1500\n1700000000000100\t503\t900\n1700000000000200\t200\t250\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readH2loadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1500 * time.Microsecond, 250 * time.Microsecond}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("readH2loadLog = %v, want %v (the 503 left out)", got, want)
	}
}

func TestConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want []string
	}{
		{"haproxy", haproxyConfig("127.0.0.1:1", "127.0.0.1:2", 10), []string{"mode http", "bind 127.0.0.1:1 proto h2", "server app 127.0.0.1:2 proto h2"}},
		{"nginx", nginxConfig("/tmp/x", "127.0.0.1:1", "127.0.0.1:2", 10), []string{"listen 127.0.0.1:1 http2;", "grpc_pass grpc://app;", "server 127.0.0.1:2;", "keepalive_requests 1000000000;"}},
		{"nghttpx", strings.Join(nghttpxArgs("/tmp/x", 1, "127.0.0.1:2"), " "), []string{"--frontend=127.0.0.1,1;no-tls", "--backend=127.0.0.1,2;;proto=h2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(tc.text, w) {
					t.Errorf("config lacks %q:\n%s", w, tc.text)
				}
			}
		})
	}
}
