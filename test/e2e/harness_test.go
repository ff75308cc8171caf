package e2e

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
)

const fullDuplex = h2raw.FullDuplex

// serve runs a gRPC server on ln until the test ends.
func serve(t *testing.T, gs *grpc.Server, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startApp runs the demo app on 127.0.0.1.
func startApp(t *testing.T) (*demoapp.App, string) {
	t.Helper()
	app := demoapp.New(1024)
	gs := grpc.NewServer(app.ServerOptions()...)
	app.Register(gs)
	ln := listen(t, "127.0.0.1:0")
	serve(t, gs, ln)
	return app, ln.Addr().String()
}

// startReceiver runs a DisconnectNotify receiver on addr ("127.0.0.1:0"
// for any port), with opts around it (interceptors that fail or stall).
func startReceiver(t *testing.T, addr string, opts ...grpc.ServerOption) (*demoapp.Receiver, string) {
	t.Helper()
	r := demoapp.NewReceiver(100000)
	gs := grpc.NewServer(opts...)
	notifyv1.RegisterDisconnectNotifyServer(gs, r)
	ln := listen(t, addr)
	serve(t, gs, ln)
	return r, ln.Addr().String()
}

func grpcClient(t *testing.T, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// openRawStream opens stream 1 with a raw client and waits until the app's
// handler has answered once.
func openRawStream(t *testing.T, addr string, headers ...string) *h2raw.Client {
	t.Helper()
	c, err := h2raw.DialStreams(addr, 1, headers...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// receive returns n events from r, failing after d.
func receive(t *testing.T, r *demoapp.Receiver, n int, d time.Duration) []demoapp.Received {
	t.Helper()
	return testtools.Receive(t, r.Events, n, d)
}

// nothingMore fails if r receives an event within d.
func nothingMore(t *testing.T, r *demoapp.Receiver, d time.Duration) {
	t.Helper()
	select {
	case e := <-r.Events:
		t.Fatalf("unexpected extra event %+v", e.Event)
	case <-time.After(d):
	}
}

func waitCall(t *testing.T, app *demoapp.App, d time.Duration) demoapp.Call {
	t.Helper()
	return testtools.Receive(t, app.Ended, 1, d)[0]
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func percentile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		<-tick.C
	}
}
