package telemetry

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/pkg/event"
)

// otlpReceiver is an OTLP/HTTP trace endpoint on 127.0.0.1 that hands every
// decoded export request to its channel.
func otlpReceiver(t *testing.T) (url string, got <-chan *collectortrace.ExportTraceServiceRequest) {
	t.Helper()
	ch := make(chan *collectortrace.ExportTraceServiceRequest, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.Error(w, "want /v1/traces", http.StatusNotFound)
			return
		}
		b, err := readBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case ch <- req:
		default:
			t.Errorf("OTLP receiver: more than %d exports", cap(ch))
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

// readBody reads an OTLP/HTTP request's body, gunzipped when the exporter
// compressed it (OTEL_EXPORTER_OTLP_COMPRESSION=gzip).
func readBody(r *http.Request) ([]byte, error) {
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		body = zr
	}
	return io.ReadAll(body)
}

func anyString(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue(), true
		}
	}
	return "", false
}

func TestSetupOTLPHTTPFromEnv(t *testing.T) {
	url, got := otlpReceiver(t)
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_SERVICE_NAME", "relay-under-test")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=hangup")

	tel, err := Setup(context.Background(), Options{Version: "v0.0.1-test"})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if !tel.Tracing() {
		t.Fatal("Tracing() = false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	conn := tel.Tracer().StartConn(ConnStart{Peer: "127.0.0.1:40000"})
	st := conn.StartStream(StreamStart{Traceparent: clientTraceparent, Method: "/echo.v1.Echo/Unary"})
	st.RSTStream(time.Now(), 8, event.InitiatorClient)
	st.End(StreamEnd{At: time.Now(), Reason: event.ReasonRSTStream, Initiator: event.InitiatorClient})
	conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	names := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for !names["echo.v1.Echo/Unary"] {
		select {
		case req := <-got:
			for _, rs := range req.GetResourceSpans() {
				attrs := rs.GetResource().GetAttributes()
				for k, want := range map[string]string{
					"service.name":           "relay-under-test",
					"service.version":        "v0.0.1-test",
					"deployment.environment": "ci",
					"team":                   "hangup",
				} {
					if v, ok := anyString(attrs, k); !ok || v != want {
						t.Errorf("resource %s = %q (present %v), want %q", k, v, ok, want)
					}
				}
				for _, ss := range rs.GetScopeSpans() {
					for _, s := range ss.GetSpans() {
						names[s.GetName()] = true
						if s.GetName() == "echo.v1.Echo/Unary" {
							if len(s.GetEvents()) != 1 || s.GetEvents()[0].GetName() != EventRSTStream {
								t.Errorf("exported stream span events = %v, want one %s", s.GetEvents(), EventRSTStream)
							}
						}
					}
				}
			}
		case <-timeout:
			t.Fatalf("no stream span exported to %s within 10s; got spans %v", url, names)
		}
	}
}

func TestSetupRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		opts Options
		// passes names what the case hands Setup as a callerOwned
		// ("processor" or "exporter"): a Setup that fails must leave it
		// to the caller, not shut it down.
		passes string
	}{
		{name: "negative SpanQueue", opts: Options{SpanQueue: -1}},
		{name: "unknown OTEL_TRACES_EXPORTER", env: map[string]string{"OTEL_TRACES_EXPORTER": "carrier-pigeon"}},
		{name: "unknown OTEL_TRACES_SAMPLER", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, passes: "processor"},
		{name: "OTEL_TRACES_SAMPLER_ARG over 1", env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10"},
			passes: "exporter"},
		{name: "OTEL_BSP_MAX_QUEUE_SIZE not a number", env: map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, passes: "exporter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			owned := &callerOwned{}
			switch tc.passes {
			case "processor":
				tc.opts.SpanProcessor = owned
			case "exporter":
				tc.opts.SpanExporter = owned
			}
			tel, err := Setup(context.Background(), tc.opts)
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatal("Setup succeeded, want an error")
			}
			t.Log(err)
			if n := owned.shutdowns.Load(); n != 0 {
				t.Errorf("the failing Setup shut down the %s the caller passed in (%d times); it is still the caller's", tc.passes, n)
			}
		})
	}
}

// callerOwned is a span processor and exporter that counts its Shutdown
// calls.
type callerOwned struct{ shutdowns atomic.Int32 }

func (*callerOwned) OnStart(context.Context, sdktrace.ReadWriteSpan)            {}
func (*callerOwned) OnEnd(sdktrace.ReadOnlySpan)                                {}
func (*callerOwned) ForceFlush(context.Context) error                           { return nil }
func (*callerOwned) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (c *callerOwned) Shutdown(context.Context) error                           { c.shutdowns.Add(1); return nil }
