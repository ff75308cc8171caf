package proxy_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/proxy"
)

// listen binds a free port on 127.0.0.1.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// startApp runs the demo gRPC app on 127.0.0.1 and returns its address.
func startApp(t *testing.T, opts ...grpc.ServerOption) (*demoapp.App, string) {
	t.Helper()
	app := demoapp.New(4096)
	gs := grpc.NewServer(append(app.ServerOptions(), opts...)...)
	app.Register(gs)
	ln := listen(t)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return app, ln.Addr().String()
}

// relay is a running proxy.Server and the events it reported.
type relay struct {
	addr   string
	srv    *proxy.Server
	events chan event.Event
}

type proxyConfig = proxy.Config

// startRelay runs the relay in front of upstream on 127.0.0.1.
func startRelay(t *testing.T, upstream string, mutate ...func(*proxy.Config)) *relay {
	t.Helper()
	r := &relay{events: make(chan event.Event, 4096)}
	cfg := proxy.Config{
		Upstream: proxy.Address{Network: "tcp", Address: upstream},
		Sink:     event.SinkFunc(func(e event.Event) { r.events <- e }),
		Linger:   time.Second,
		// Park at the first pause, so that every test also relays through
		// parked and resumed forwarders.
		ParkAfter: time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln := listen(t)
	r.addr, r.srv = ln.Addr().String(), srv
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

// client dials addr with a real grpc-go client.
func client(t *testing.T, addr string, opts ...grpc.DialOption) testgrpc.TestServiceClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

func tlsClient(t *testing.T, addr string, cfg *tls.Config) testgrpc.TestServiceClient {
	t.Helper()
	return client(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// testCtx bounds a test's calls.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitEvents returns the next n events, failing the test after d.
func (r *relay) waitEvents(t *testing.T, n int, d time.Duration) []event.Event {
	t.Helper()
	return testtools.Receive(t, r.events, n, d)
}

// noEvents fails if an event is pending now.
func (r *relay) noEvents(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.events:
		t.Fatalf("unexpected event %+v", e)
	default:
	}
}

// waitCall returns the next call the app finished, failing after d.
func waitCall(t *testing.T, app *demoapp.App, d time.Duration) demoapp.Call {
	t.Helper()
	return testtools.Receive(t, app.Ended, 1, d)[0]
}
