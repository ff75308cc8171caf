// Package docs_test keeps the observability docs in step with the code:
// the Grafana dashboard's PromQL and docs/metrics.md may only name metrics
// and labels the sidecar exports, and must cover every one of them.
package docs_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/grace"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// family is one exported metric family: its type and label names.
type family struct {
	typ    string          // counter, gauge, histogram
	labels map[string]bool // label names of its samples, otel_scope_* excluded
}

// series returns the sample names a PromQL expression can use for the
// family: the name itself, or for a histogram its _bucket, _sum and _count.
func (f family) series(name string) []string {
	if f.typ == "histogram" {
		return []string{name + "_bucket", name + "_sum", name + "_count"}
	}
	return []string{name}
}

// parseFamilies reads a Prometheus text exposition.
func parseFamilies(t *testing.T, r io.Reader) map[string]family {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]family{}
	for name, mf := range fams {
		f := family{typ: strings.ToLower(mf.GetType().String()), labels: map[string]bool{}}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !strings.HasPrefix(l.GetName(), "otel_scope_") {
					f.labels[l.GetName()] = true
				}
			}
		}
		out[name] = f
	}
	return out
}

func scrape(t *testing.T, url string) map[string]family {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return parseFamilies(t, resp.Body)
}

// inProcessFamilies sets up pkg/telemetry as the sidecar does (tracing on,
// the notifier observed), records one of everything, so that every
// instrument and every label exists, and scrapes its /metrics handler.
func inProcessFamilies(t *testing.T) map[string]family {
	t.Helper()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{SpanExporter: tracetest.NewInMemoryExporter()})
	if err != nil {
		t.Fatalf("telemetry.Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("telemetry Shutdown: %v", err)
		}
	})
	m := tel.Metrics()
	if err := m.ObserveNotifier(func() notify.Stats { return notify.Stats{QueueDepth: 1, Dropped: 1, Retries: 1, Delivered: 1} }); err != nil {
		t.Fatalf("ObserveNotifier: %v", err)
	}
	if err := m.ObserveWatch(func() watch.Counters { return watch.Counters{Watchers: 1, Sent: 1, Gaps: 1, Missed: 1} }); err != nil {
		t.Fatalf("ObserveWatch: %v", err)
	}
	if err := m.ObserveGrace(func() grace.Stats { return grace.Stats{Held: 1, Resumed: 1, Expired: 1, Holding: 1} }); err != nil {
		t.Fatalf("ObserveGrace: %v", err)
	}
	m.ConnOpened()
	m.StreamOpened()
	m.Disconnect(event.ReasonRSTStream, event.InitiatorClient)
	m.DetectionLatency(time.Millisecond)
	tel.OnDelivered(event.Event{}, 1, time.Millisecond)
	m.KeepalivePing()
	m.KeepaliveTimeout()
	m.RTT(40 * time.Millisecond)
	m.AbuseGoAway("too_many_pings")
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	return scrape(t, srv.URL)
}

// TestBinaryExportsTheSameMetrics drives one RST_STREAM disconnect through
// the built sidecar and checks that every hangup metric its /metrics serves
// is one inProcessFamilies knows, with the same type and labels, and that
// the disconnect's series are there: the in-process list, which the
// dashboard and docs checks use, is the binary's.
func TestBinaryExportsTheSameMetrics(t *testing.T) {
	want := inProcessFamilies(t)

	app := demoapp.New(16)
	appSrv := grpc.NewServer(app.ServerOptions()...)
	app.Register(appSrv)
	appAddr := serve(t, appSrv)
	recv := demoapp.NewReceiver(16)
	recvSrv := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(recvSrv, recv)
	recvAddr := serve(t, recvSrv)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr)

	c, err := h2raw.Dial(sc.Addr)
	if err != nil {
		t.Fatalf("dial the sidecar at %s: %v", sc.Addr, err)
	}
	defer c.Close()
	msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.OpenStream(1, h2raw.GRPCRequest("/grpc.testing.TestService/FullDuplexCall")); err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if err := c.SendMessage(1, msg, false); err != nil {
		t.Fatalf("send message: %v", err)
	}
	if _, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameData }); err != nil {
		t.Fatalf("wait for the app's answer: %v", err)
	}
	if err := c.Framer.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatalf("send RST_STREAM: %v", err)
	}
	select {
	case ev := <-recv.Events:
		if ev.Event.Reason != event.ReasonRSTStream {
			t.Fatalf("app got %v, want RST_STREAM", ev.Event.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DisconnectEvent within 10s")
	}

	// The notify latency is recorded after the app's answer reaches the
	// sidecar, a moment after the app saw the event: wait for it.
	url := "http://" + sc.AdminAddr + "/metrics"
	disconnectSeries := []string{"hangup_connections_active", "hangup_streams_active", "hangup_disconnects_total",
		"hangup_detection_latency_seconds", "hangup_notify_latency_seconds", "hangup_notify_queue_depth",
		"hangup_notify_delivered_total", "hangup_notify_dropped_total", "hangup_notify_retries_total"}
	var got map[string]family
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got = scrape(t, url)
		missing := missingOf(got, disconnectSeries)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one RST_STREAM, /metrics of the sidecar lacks %v; it has %v", missing, sortedKeys(got))
		}
		<-tick.C
	}
	if l := got["hangup_disconnects_total"].labels; !l["reason"] || !l["initiator"] {
		t.Errorf("hangup_disconnects_total has labels %v, want reason and initiator", sortedKeys(l))
	}
	for name, f := range got {
		if !strings.HasPrefix(name, "hangup_") {
			continue
		}
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("the sidecar exports %s, which pkg/telemetry's Setup does not: add it to inProcessFamilies, the dashboard and docs/metrics.md", name)
		case w.typ != f.typ:
			t.Errorf("%s is a %s in the sidecar, a %s in process", name, f.typ, w.typ)
		case strings.Join(sortedKeys(w.labels), ",") != strings.Join(sortedKeys(f.labels), ","):
			t.Errorf("%s has labels %v in the sidecar, %v in process", name, sortedKeys(f.labels), sortedKeys(w.labels))
		}
	}
}

// serve runs gs on a free 127.0.0.1 port until the test ends.
func serve(t *testing.T, gs *grpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String()
}

func missingOf(fams map[string]family, names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := fams[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
