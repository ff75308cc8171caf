package proxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hangup-dev/hangup/pkg/proxy"
)

// TestGRPCCallsThroughRelay drives every call shape of a real grpc-go client
// and server through the relay; none of them may produce a disconnect.
func TestGRPCCallsThroughRelay(t *testing.T) {
	app, appAddr := startApp(t, grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	r := startRelay(t, appAddr)
	c := client(t, r.addr)
	big := grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))
	cBig := client(t, r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), big)

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"unary", func(ctx context.Context) error {
			resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1000, Payload: &testgrpc.Payload{Body: make([]byte, 1000)}})
			if err == nil && len(resp.GetPayload().GetBody()) != 1000 {
				return errors.New("short unary response")
			}
			return err
		}},
		{"unary error status", func(ctx context.Context) error {
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "nothing here"}})
			if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "nothing here" {
				return errors.New("want NotFound \"nothing here\", got " + st.String())
			}
			return nil
		}},
		{"server streaming", func(ctx context.Context) error {
			params := make([]*testgrpc.ResponseParameters, 50)
			for i := range params {
				params[i] = &testgrpc.ResponseParameters{Size: int32(100 * i)}
			}
			s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
			if err != nil {
				return err
			}
			for i := range params {
				m, err := s.Recv()
				if err != nil {
					return err
				}
				if len(m.GetPayload().GetBody()) != 100*i {
					return errors.New("wrong message size")
				}
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return errors.New("want EOF")
			}
			return nil
		}},
		{"client streaming", func(ctx context.Context) error {
			s, err := c.StreamingInputCall(ctx)
			if err != nil {
				return err
			}
			for range 50 {
				if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 1000)}}); err != nil {
					return err
				}
			}
			resp, err := s.CloseAndRecv()
			if err == nil && resp.GetAggregatedPayloadSize() != 50000 {
				return errors.New("wrong aggregated size " + strconv.Itoa(int(resp.GetAggregatedPayloadSize())))
			}
			return err
		}},
		{"bidi ping-pong", func(ctx context.Context) error {
			s, err := c.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			for i := range 100 {
				if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i)}}}); err != nil {
					return err
				}
				if _, err := s.Recv(); err != nil {
					return err
				}
			}
			_ = s.CloseSend()
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return errors.New("want EOF")
			}
			return nil
		}},
		{"4 MiB request and 8 MiB response", func(ctx context.Context) error {
			resp, err := cBig.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 8 << 20, Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{7}, 4<<20)}})
			if err == nil && len(resp.GetPayload().GetBody()) != 8<<20 {
				return errors.New("short response")
			}
			return err
		}},
		{"16 MiB bidi messages", func(ctx context.Context) error {
			s, err := cBig.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			for range 3 {
				if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 16 << 20}},
					Payload: &testgrpc.Payload{Body: make([]byte, 16<<20)}}); err != nil {
					return err
				}
				m, err := s.Recv()
				if err != nil {
					return err
				}
				if len(m.GetPayload().GetBody()) != 16<<20 {
					return errors.New("short message")
				}
			}
			// Read to the end: a call left open when the subtest's context
			// ends is cancelled, which the relay rightly reports.
			if err := s.CloseSend(); err != nil {
				return err
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("want EOF, got %v", err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(testCtx(t)); err != nil {
				t.Fatalf("call through the relay: %v", err)
			}
		})
	}
	r.noEvents(t)
	for _, call := range app.Calls() {
		if call.ConnectionID == "" || call.StreamID == 0 {
			t.Errorf("call %s reached the app without x-hangup ids: %+v", call.Method, call.Metadata)
		}
	}
}

// TestThousandConcurrentStreams opens 1,000 streams at once on one
// connection and completes them all.
func TestThousandConcurrentStreams(t *testing.T) {
	_, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := client(t, r.addr)
	ctx := testCtx(t)

	const n = 1000
	streams := make([]testgrpc.TestService_FullDuplexCallClient, n)
	for i := range streams {
		s, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		streams[i] = s
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Recv(); err != nil {
				failed.Add(1)
				return
			}
			_ = s.CloseSend()
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d concurrent streams failed", f, n)
	}
	r.noEvents(t)
}

// TestSlowReaderIsFlowControlled checks that a client that stops reading
// stops the app through HTTP/2 flow control: the relay buffers nothing
// without bound in between.
func TestSlowReaderIsFlowControlled(t *testing.T) {
	app, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := client(t, r.addr)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()

	// Ask for 256 MiB in 1 MiB messages and read none of it for a while.
	params := make([]*testgrpc.ResponseParameters, 256)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: 1 << 20}
	}
	s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params},
		grpc.MaxCallRecvMsgSize(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	// The bytes in flight are bounded by the flow-control windows and the
	// socket buffers (a few MiB): watch what the app manages to send over a
	// window of time; it must stop far short of the 256 MiB it wants to.
	if _, err = s.Recv(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		if sent := app.SentBytes(); sent > 64<<20 {
			t.Fatalf("the app sent %d bytes to a client that reads nothing", sent)
		}
	}
	// Now read everything: the stream completes.
	for i := 1; i < len(params); i++ {
		if _, err := s.Recv(); err != nil {
			t.Fatalf("message %d after resuming: %v", i, err)
		}
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF, got %v", err)
	}
}

// TestHangupHeaders checks that every request carries the relay's ids and
// that a client cannot forge them.
func TestHangupHeaders(t *testing.T) {
	app, appAddr := startApp(t)
	r := startRelay(t, appAddr)
	c := client(t, r.addr)
	ctx := metadata.AppendToOutgoingContext(testCtx(t),
		proxy.HeaderConnectionID, "forged-connection", proxy.HeaderStreamID, "424242")
	for range 3 {
		if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	calls := app.Calls()
	if len(calls) != 3 {
		t.Fatalf("app saw %d calls, want 3", len(calls))
	}
	seen := map[uint32]bool{}
	for _, call := range calls {
		if call.ConnectionID == "" || call.ConnectionID == "forged-connection" || call.IDValues != 1 {
			t.Errorf("x-hangup-connection-id = %q (%d values), want one relay-made id", call.ConnectionID, call.IDValues)
		}
		if got := call.Metadata.Get(proxy.HeaderStreamID); len(got) != 1 || got[0] == "424242" {
			t.Errorf("x-hangup-stream-id = %q, want exactly one relay-made id", got)
		}
		if call.StreamID%2 != 1 || seen[call.StreamID] {
			t.Errorf("stream id %d: want a new odd client stream id", call.StreamID)
		}
		seen[call.StreamID] = true
		if call.ConnectionID != calls[0].ConnectionID {
			t.Errorf("calls on one connection got different connection ids %q and %q", call.ConnectionID, calls[0].ConnectionID)
		}
	}
}

// TestHTTP1OverTCPRelay checks that a connection without the HTTP/2 preface
// is relayed byte for byte.
func TestHTTP1OverTCPRelay(t *testing.T) {
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		_, _ = w.Write(append([]byte("echo:"), body...))
	})}
	ln := listen(t)
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })

	r := startRelay(t, ln.Addr().String())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, body := range []string{"one", "two"} {
		resp, err := hc.Post("http://"+r.addr+"/", "text/plain", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "echo:"+body || resp.Header.Get("X-Proto") != "HTTP/1.1" {
			t.Fatalf("got %q over %s, want %q over HTTP/1.1", got, resp.Header.Get("X-Proto"), "echo:"+body)
		}
	}
	r.noEvents(t)
}

// TestTLSListener checks gRPC over TLS (ALPN h2) and HTTP/1.1 over TLS.
func TestTLSListener(t *testing.T) {
	app, appAddr := startApp(t)
	cert, pool := selfSigned(t)
	r := startRelay(t, appAddr, func(c *proxy.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	})
	c := tlsClient(t, r.addr, &tls.Config{RootCAs: pool, ServerName: "hangup.test"})
	if _, err := c.UnaryCall(testCtx(t), &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	if calls := app.Calls(); len(calls) != 1 || calls[0].ConnectionID == "" {
		t.Fatalf("app calls %+v, want one with relay ids", calls)
	}
	r.noEvents(t)
}

// selfSigned makes a certificate for hangup.test and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hangup.test"},
		DNSNames: []string{"hangup.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
