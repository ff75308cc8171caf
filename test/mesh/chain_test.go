package mesh

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

const (
	clientEnv = "HANGUP_MESH_CLIENT"
	caEnv     = "HANGUP_MESH_CA"

	// frontTimeout is the front proxy's own downstream timeout
	// (nghttpx --stream-read-timeout, haproxy timeout client), the stand-in for the mesh's
	// downstream keepalive: it turns a silent client into a reset.
	frontTimeout = 4 * time.Second
	// hangup's keepalive: it would find a silent direct client within
	// time + timeout = 2 s; behind the proxy its PINGs are answered by the
	// proxy, so it cannot.
	keepaliveTime, keepaliveTimeout = time.Second, time.Second
)

// chain is client ──TLS h2──▶ nghttpx ──h2c, pooled──▶ hangup ──h2c──▶ app.
type chain struct {
	app     *demoapp.App
	appGS   *grpc.Server
	appAddr string
	events  chan demoapp.Received
	front   string // nghttpx's TLS address
	caFile  string
	sidecar *testtools.Sidecar
}

// TestMeshChain runs the three client disconnects through real front
// proxies from Debian (nghttpx and haproxy, each terminating TLS and
// pooling) in front of hangup in port mode, in a network namespace the
// test creates:
//
//   - a client that cancels its call: the proxy resets the stream on its
//     pooled connection (with a code of its own) and hangup reports
//     RST_STREAM;
//   - a client process that is killed: the kernel closes its socket, the
//     proxy resets the stream and hangup reports RST_STREAM;
//   - a client that goes silent (its packets dropped): hangup's own PINGs
//     are answered by the proxy, so hangup sees nothing until the proxy's
//     own timeout resets the stream; then it reports RST_STREAM.
//
// In each case the app's handler is cancelled, and the proxy's connection
// to hangup, shared by the clients, stays open.
func TestMeshChain(t *testing.T) {
	bin := testtools.SidecarBin(t)
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			testtools.InNetns(t, func(t *testing.T) {
				c := startChain(t, f)
				t.Run("pooled", c.pooled)
				t.Run("cancel", c.cancel)
				t.Run("killed client", c.killed)
				if f.resetsSilent {
					t.Run("silent client", c.silent)
				}
			}, testtools.SidecarBinEnv+"="+bin)
		})
	}
}

// front is a front proxy: start runs it on front (TLS, ALPN h2, with the
// key and certificate files) relaying to hangup at backend over h2c on
// one pooled connection, with frontTimeout as its stream timeout toward
// clients.
type front struct {
	name  string
	start func(t *testing.T, front, backend, keyFile, certFile string) *testtools.Process
	// resetsSilent: the proxy's timeout resets an open stream whose
	// client went silent. haproxy 2.6's "timeout client" does not (no
	// reset within 6 s of a 4 s timeout): behind it a silent client stays
	// invisible, as docs/mesh.md says of a mesh without downstream
	// keepalive.
	resetsSilent bool
}

var (
	nghttpx = front{"nghttpx", func(t *testing.T, front, backend, keyFile, certFile string) *testtools.Process {
		fhost, fport, _ := net.SplitHostPort(front)
		bhost, bport, _ := net.SplitHostPort(backend)
		return testtools.StartProcess(t, context.Background(), "nghttpx",
			"--conf=/dev/null",
			"--frontend="+fhost+","+fport,
			// proto=h2 without tls: h2c to hangup, one pooled connection
			// per worker, as a mesh proxy's connection to its app.
			"--backend="+bhost+","+bport+";;proto=h2",
			"--workers=1",
			"--stream-read-timeout="+frontTimeout.String(),
			"--no-ocsp",
			"--errorlog-file=/dev/stderr",
			keyFile, certFile)
	}, true}
	haproxy = front{"haproxy", func(t *testing.T, front, backend, keyFile, certFile string) *testtools.Process {
		t.Helper()
		dir := t.TempDir()
		// haproxy reads the certificate and its key from one file.
		var pemBytes []byte
		for _, f := range []string{certFile, keyFile} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			pemBytes = append(pemBytes, b...)
		}
		crt := filepath.Join(dir, "front.pem")
		cfg := filepath.Join(dir, "haproxy.cfg")
		// timeout client is haproxy's inactivity timeout toward the
		// client; http-reuse always pools every client's streams onto
		// one connection to hangup.
		conf := fmt.Sprintf(`global
	log stderr format raw local0 warning
defaults
	mode http
	log global
	timeout connect 5s
	timeout client %[1]dms
	timeout server 1m
frontend clients
	bind %[2]s ssl crt %[3]s alpn h2
	default_backend hangup
backend hangup
	http-reuse always
	server hangup %[4]s proto h2
`, frontTimeout.Milliseconds(), front, crt, backend)
		for f, b := range map[string][]byte{crt: pemBytes, cfg: []byte(conf)} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return testtools.StartProcess(t, context.Background(), "haproxy", "-db", "-f", cfg)
	}, false}
	fronts = []front{nghttpx, haproxy}
)

// startChain starts the chain with front f; sidecarArgs are added to
// hangup's.
func startChain(t *testing.T, f front, sidecarArgs ...string) *chain {
	t.Helper()
	for _, tool := range []string{f.name, "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: run scripts/install-debs.sh: %v", tool, err)
		}
	}
	c := &chain{app: demoapp.New(64)}
	c.appAddr = c.startApp(t, "127.0.0.1:0")

	recv := demoapp.NewReceiver(64)
	c.events = recv.Events
	recvGS := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(recvGS, recv)
	recvAddr := serve(t, recvGS)

	c.sidecar = testtools.StartSidecar(t, c.appAddr, append([]string{"--notify-addr", recvAddr,
		"--keepalive-time", keepaliveTime.String(), "--keepalive-timeout", keepaliveTimeout.String()}, sidecarArgs...)...)

	keyFile, certFile := selfSigned(t, t.TempDir())
	c.caFile = certFile
	c.front = net.JoinHostPort("127.0.0.1", strconv.Itoa(testtools.FreePort(t)))
	p := f.start(t, c.front, c.sidecar.Addr, keyFile, certFile)
	testtools.WaitTCP(t, c.front, 10*time.Second, p.Done())
	return c
}

// startApp serves the app on addr and returns the address.
func (c *chain) startApp(t *testing.T, addr string) string {
	t.Helper()
	c.appGS = grpc.NewServer(c.app.ServerOptions()...)
	testgrpc.RegisterTestServiceServer(c.appGS, holdingApp{c.app})
	return listenServe(t, c.appGS, addr)
}

// holdingApp is the demo app whose FullDuplexCall, once the client
// half-closes, keeps the stream open until it is cancelled (or
// holdAfterHalfClose passes), as a handler with more to send would.
//
// haproxy ends a vanished client's request stream (an empty DATA frame with
// END_STREAM) and resets it in the same segment. A handler that returns at
// io.EOF races the app's gRPC library: it may end normally before the
// reset cancels it, and then only the DisconnectNotify event says the
// client left. Holding the stream makes the in-band reset the only way the
// handler ends, so the check that it was cancelled cannot race.
type holdingApp struct{ *demoapp.App }

// holdAfterHalfClose bounds the hold: longer than any wait of the tests,
// so a reset that never reaches the app fails them.
const holdAfterHalfClose = 30 * time.Second

func (a holdingApp) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	if err := a.App.FullDuplexCall(s); err != nil {
		return err
	}
	t := time.NewTimer(holdAfterHalfClose)
	defer t.Stop()
	select {
	case <-s.Context().Done():
		return s.Context().Err()
	case <-t.C:
		return nil
	}
}

func serve(t *testing.T, gs *grpc.Server) string {
	t.Helper()
	return listenServe(t, gs, "127.0.0.1:0")
}

func listenServe(t *testing.T, gs *grpc.Server, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String()
}

// selfSigned writes a key and a self-signed certificate for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (keyFile, certFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "front proxy"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, certFile = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	for f, b := range map[string]*pem.Block{keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}, certFile: {Type: "CERTIFICATE", Bytes: der}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return keyFile, certFile
}

// dialFront returns a client of the front proxy over TLS, on a connection
// of its own.
func dialFront(addr, caFile string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	return grpc.NewClient(addr, opts...)
}

func (c *chain) client(t *testing.T) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := dialFront(c.front, c.caFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testgrpc.NewTestServiceClient(statusConn{cc})
}

// statusConn is a client connection whose unary calls return the status
// the call ended with even when the far side ended it before the request
// was sent. grpc-go's own unary path returns a bare io.EOF then
// (grpc/grpc-go#7230, still so in v1.85), which a front proxy answering
// 502 at once for an app that is down made a rare flake of
// TestAppExitsFirst ("a call with the app down: EOF, want UNAVAILABLE").
// It does what that issue proposes: on io.EOF from sending, receive, which
// returns the status.
type statusConn struct{ *grpc.ClientConn }

func (c statusConn) Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	s, err := c.NewStream(ctx, &grpc.StreamDesc{}, method, opts...)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return s.RecvMsg(reply)
}

// openStream starts a FullDuplexCall and waits for its first answer, so
// that the stream is open end to end.
func openStream(ctx context.Context, cl testgrpc.TestServiceClient) (testgrpc.TestService_FullDuplexCallClient, error) {
	s, err := cl.FullDuplexCall(ctx)
	if err != nil {
		return nil, err
	}
	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}
	if err := s.Send(req); err != nil {
		return nil, err
	}
	if _, err := s.Recv(); err != nil {
		return nil, err
	}
	return s, nil
}

// pooled: two clients on two TLS connections reach the app on one
// connection of the proxy's: the app sees one hangup connection id.
func (c *chain) pooled(t *testing.T) {
	for range 2 {
		if _, err := c.client(t).EmptyCall(ctxT(t, 5*time.Second), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	calls := c.app.Calls()
	if len(calls) != 2 || calls[0].ConnectionID == "" || calls[0].ConnectionID != calls[1].ConnectionID {
		t.Fatalf("calls %+v: want two on one pooled connection", calls)
	}
	drainCalls(t, c.app, 2)
}

func (c *chain) cancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := openStream(ctx, c.client(t)); err != nil {
		t.Fatal(err)
	}
	cancel()
	ev := c.streamEvent(t, 5*time.Second)
	// The proxy resets with a code of its own: the client's CANCEL is not
	// carried over (nghttpx sends INTERNAL_ERROR), so the reason, not the
	// code, says the client left.
	t.Logf("cancel: the proxy reset the stream with code %#x", ev.HTTP2ErrorCode)
}

func (c *chain) killed(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), clientEnv+"="+c.front, caEnv+"="+c.caFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	opened := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		opened <- strings.TrimSpace(line)
	}()
	if got := testtools.Receive(t, opened, 1, 10*time.Second)[0]; got != "open" {
		t.Fatalf("client process said %q, want open", got)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ev := c.streamEvent(t, 5*time.Second)
	t.Logf("killed client: the proxy reset the stream with code %#x", ev.HTTP2ErrorCode)
}

// runClientProcess is the killed client: it opens a stream through the
// front proxy, says "open" and waits to be killed.
func runClientProcess(addr, caFile string) int {
	cc, err := dialFront(addr, caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := openStream(ctx, testgrpc.NewTestServiceClient(cc)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("open")
	<-ctx.Done() // killed long before
	return 1
}

func (c *chain) silent(t *testing.T) {
	local := make(chan string, 1)
	cc, err := dialFront(c.front, c.caFile, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			local <- strconv.Itoa(conn.LocalAddr().(*net.TCPAddr).Port)
		}
		return conn, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := openStream(ctx, testgrpc.NewTestServiceClient(cc)); err != nil {
		t.Fatal(err)
	}
	port := testtools.Receive(t, local, 1, time.Second)[0]

	// Every packet to or from the client's port is dropped from now on;
	// on loopback both directions pass the INPUT chain. No FIN, no RST.
	for _, dir := range []string{"--sport", "--dport"} {
		rule := []string{"INPUT", "-p", "tcp", dir, port, "-j", "DROP"}
		if out, err := exec.Command("iptables", append([]string{"-A"}, rule...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %s: %v\n%s", strings.Join(rule, " "), err, out)
		}
		t.Cleanup(func() { _ = exec.Command("iptables", append([]string{"-D"}, rule...)...).Run() })
	}
	vanished := time.Now()

	// hangup's PINGs are answered by the proxy, hop by hop: within its own
	// keepalive time + timeout (and a second more) it sees nothing.
	quiet := keepaliveTime + keepaliveTimeout + time.Second
	select {
	case e := <-c.events:
		t.Fatalf("event %+v after %v, before the proxy's timeout: the proxy answers hangup's PINGs, so it cannot see a silent client", e.Event, time.Since(vanished))
	case <-time.After(quiet):
	}
	// The proxy's own timeout turns the silent client into a reset.
	ev := c.streamEvent(t, frontTimeout+5*time.Second-quiet)
	took := ev.DetectedAt.Sub(vanished)
	if took < frontTimeout-time.Second {
		t.Errorf("reset after %v, want it from the proxy's %v timeout", took, frontTimeout)
	}
	t.Logf("silent client: reset by the front proxy's %v timeout, reported after %v (code %#x)", frontTimeout, took, ev.HTTP2ErrorCode)
}

// streamEvent waits for one stream event and checks that it is the reset
// the proxy sent on the client's behalf, and that the app's handler was
// cancelled.
func (c *chain) streamEvent(t *testing.T, d time.Duration) event.Event {
	t.Helper()
	ev := testtools.Receive(t, c.events, 1, d)[0].Event
	if ev.Scope != event.ScopeStream || ev.Reason != event.ReasonRSTStream || ev.Initiator != event.InitiatorClient {
		t.Fatalf("event %+v, want a client RST_STREAM of one stream", ev)
	}
	call := testtools.Receive(t, c.app.Ended, 1, d)[0]
	if !errors.Is(call.Err, context.Canceled) || call.StreamID != ev.StreamID {
		t.Fatalf("handler %+v, want stream %d cancelled", call, ev.StreamID)
	}
	return ev
}

func drainCalls(t *testing.T, app *demoapp.App, n int) {
	t.Helper()
	testtools.Receive(t, app.Ended, n, 5*time.Second)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
