// Package jaegertest runs a real Jaeger v2 for end-to-end tests and reads
// traces back through its query HTTP API.
//
// The jaeger binary is the one scripts/install-tools.sh builds into
// ${HANGUP_CACHE:-$HOME/.cache/hangup}/bin/jaeger. Jaeger v2 is an
// OpenTelemetry collector distribution, so Start writes collector YAML:
// in-memory storage (jaeger_storage), the query extension (jaeger_query)
// and OTLP gRPC and HTTP receivers, every listener on a free 127.0.0.1 port.
//
// Traces are read from /api/traces, the v1-style JSON API the query
// extension still serves (the Jaeger UI uses it too): it returns OTel span
// events as logs and span kind / status as tags, which the types in
// model.go decode. The /api/v3 API would do as well; v1 was chosen because
// its JSON is flat and what most tooling (and internal/waterfall) reads.
package jaegertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for Jaeger to answer.
const startTimeout = 30 * time.Second

// Jaeger is a running jaeger process, stopped at the end of the test.
type Jaeger struct {
	// OTLPEndpoint is the OTLP/HTTP receiver, http://127.0.0.1:PORT: the
	// value for OTEL_EXPORTER_OTLP_ENDPOINT with
	// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.
	OTLPEndpoint string
	// OTLPGRPCEndpoint is the OTLP/gRPC receiver, http://127.0.0.1:PORT:
	// the value for OTEL_EXPORTER_OTLP_ENDPOINT with
	// OTEL_EXPORTER_OTLP_PROTOCOL=grpc (plaintext).
	OTLPGRPCEndpoint string
	// QueryURL is the query HTTP API (and UI) base, http://127.0.0.1:PORT.
	QueryURL string

	logPath string
}

// Binary returns where the jaeger binary is expected.
func Binary() string {
	dir := os.Getenv("HANGUP_CACHE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "hangup")
	}
	return filepath.Join(dir, "bin", "jaeger")
}

// Ports are the four listeners of a Jaeger v2 started with Config, all on
// 127.0.0.1.
type Ports struct {
	Query     int // query HTTP API and UI (Jaeger's usual 16686)
	QueryGRPC int // query gRPC API (usual 16685)
	OTLPGRPC  int // OTLP/gRPC receiver (usual 4317)
	OTLPHTTP  int // OTLP/HTTP receiver (usual 4318)
}

// DefaultPorts are Jaeger's usual ports, for a Jaeger run by hand.
var DefaultPorts = Ports{Query: 16686, QueryGRPC: 16685, OTLPGRPC: 4317, OTLPHTTP: 4318}

// Config returns the collector YAML that Start runs Jaeger with: in-memory
// storage (at most 10000 traces), the query extension, and the OTLP
// receivers, every listener on 127.0.0.1 at p's ports. tools/jaeger-config
// writes the same file for scripts and for people, so the two cannot drift.
func Config(p Ports) []byte {
	return fmt.Appendf(nil, configTemplate, p.Query, p.QueryGRPC, p.OTLPGRPC, p.OTLPHTTP)
}

const configTemplate = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// Start runs jaeger with a fresh in-memory store and waits until its query
// API and OTLP receivers answer. It fails the test when the binary is
// missing or Jaeger does not come up within 30 s. t.Cleanup kills it and
// waits for it.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("jaeger binary: %v; run scripts/install-tools.sh jaeger (or set HANGUP_CACHE)", err)
	}
	fp, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	ports := Ports{Query: fp[0], QueryGRPC: fp[1], OTLPGRPC: fp[2], OTLPHTTP: fp[3]}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, Config(ports), 0o600); err != nil {
		t.Fatalf("write jaeger config: %v", err)
	}
	j := &Jaeger{
		QueryURL:         fmt.Sprintf("http://127.0.0.1:%d", ports.Query),
		OTLPGRPCEndpoint: fmt.Sprintf("http://127.0.0.1:%d", ports.OTLPGRPC),
		OTLPEndpoint:     fmt.Sprintf("http://127.0.0.1:%d", ports.OTLPHTTP),
		logPath:          filepath.Join(dir, "jaeger.log"),
	}
	logf, err := os.Create(j.logPath)
	if err != nil {
		t.Fatalf("create jaeger log: %v", err)
	}
	cmd := exec.Command(bin, "--config", "file:"+cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			t.Logf("jaeger log:\n%s", j.logTail())
		}
	})

	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !j.ready() {
		select {
		case err := <-exited:
			exited <- err // for Cleanup
			t.Fatalf("jaeger exited before it was ready: %v\n%s", err, j.logTail())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready after %v\n%s", startTimeout, j.logTail())
		}
	}
	return j
}

// ready reports whether the query API answers and both receivers accept
// connections (the collector starts receivers after extensions).
func (j *Jaeger) ready() bool {
	for _, u := range []string{j.OTLPEndpoint, j.OTLPGRPCEndpoint} {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "http://"), time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	resp, err := http.Get(j.QueryURL + "/api/services")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (j *Jaeger) logTail() string {
	b, err := os.ReadFile(j.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// FreePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago. Another process could take one before jaeger binds it, which Start
// then reports as jaeger failing to start.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Traces returns the traces Jaeger holds for service (at most 100, of the
// last hour), from GET /api/traces?service=....
func (j *Jaeger) Traces(t testing.TB, service string) []Trace {
	t.Helper()
	traces, err := j.traces(service, nil)
	if err != nil {
		t.Fatal(err)
	}
	return traces
}

// Find returns service's traces with a span carrying every tag in tags,
// from GET /api/traces?service=...&tags={"k":"v"} (at most 100, of the last
// hour).
func (j *Jaeger) Find(t testing.TB, service string, tags map[string]string) []Trace {
	t.Helper()
	traces, err := j.traces(service, tags)
	if err != nil {
		t.Fatal(err)
	}
	return traces
}

func (j *Jaeger) traces(service string, tags map[string]string) ([]Trace, error) {
	return Search(j.QueryURL, service, tags)
}

// Search asks the Jaeger query API at queryURL (http://host:16686) for
// service's traces of the last hour with a span carrying every tag in tags
// (at most 100), from GET /api/traces?service=...&tags={"k":"v"}. A service
// Jaeger has not seen yet has no traces: nil, not an error.
func Search(queryURL, service string, tags map[string]string) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {"100"}, "lookback": {"1h"}}
	if len(tags) > 0 {
		b, err := json.Marshal(tags)
		if err != nil {
			return nil, fmt.Errorf("encode tags %v: %w", tags, err)
		}
		q.Set("tags", string(b))
	}
	u := strings.TrimSuffix(queryURL, "/") + "/api/traces?" + q.Encode()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return nil, fmt.Errorf("query jaeger %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read jaeger answer to %s: %w", u, err)
	}
	// An unknown service is a 404 or an error entry until its first span
	// is stored: no traces yet.
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query jaeger %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode jaeger answer to %s: %w", u, err)
	}
	return r.Data, nil
}

// WaitTrace polls Jaeger until one of service's traces satisfies pred and
// returns it, failing the test after timeout. Spans of one trace can arrive
// in several exports, so pred should check every span it needs.
func (j *Jaeger) WaitTrace(t testing.TB, service string, pred func(*Trace) bool, timeout time.Duration) Trace {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var seen []Trace
	for {
		traces, err := j.traces(service, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range traces {
			if pred(&traces[i]) {
				return traces[i]
			}
		}
		seen = traces
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(seen, "", "  ")
			t.Fatalf("no trace of service %q matched within %v; Jaeger has %d:\n%s", service, timeout, len(seen), b)
		}
		<-tick.C
	}
}
