//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/inject"
)

// TestRedirectProbes proves that the kubelet's probes keep working in
// redirect mode, with real packets from outside the pod's namespace (where
// the kubelet is). The init container's arguments are the ones the injector
// writes for a pod whose probes are:
//
//   - an HTTP/1.1 probe on a health port of its own (8081): the injector
//     leaves that port out of the redirect, so the probe reaches the app
//     directly (the app sees the prober's address, not loopback);
//   - HTTP/1.1, gRPC and TCP probes on the app port: they go through the
//     sidecar (the app sees loopback), HTTP/1.1 relayed as plain TCP and
//     gRPC as h2c.
//
// With the app stopped, the HTTP and gRPC probes through the sidecar fail,
// as they would without it; a TCP probe on the app port then still
// passes: it tests the sidecar's accept, not the app (docs/mesh.md says
// so, and recommends a gRPC probe there).
func TestRedirectProbes(t *testing.T) {
	bin := testtools.SidecarBin(t)
	testtools.InNetns(t, func(t *testing.T) { redirectProbes(t, bin) }, "HANGUP_SIDECAR_BIN="+bin)
}

const (
	probeAppPort    = 18080
	probeHealthPort = 8081
)

// probedPod is a pod with every kind of probe, on the app port and on a
// health port of its own.
func probedPod() *corev1.Pod {
	httpGet := func(port intstr.IntOrString) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: port}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: "apps", Annotations: map[string]string{
			inject.AnnotationInject: "true", inject.AnnotationMode: "redirect",
			inject.AnnotationAppPort: strconv.Itoa(probeAppPort),
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Image: "example.com/greeter:1.0",
			Ports: []corev1.ContainerPort{
				{ContainerPort: probeAppPort},
				{Name: "health", ContainerPort: probeHealthPort},
			},
			LivenessProbe:  &corev1.Probe{ProbeHandler: httpGet(intstr.FromString("health"))},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: probeAppPort}}},
			StartupProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(probeAppPort)}}},
		}, {
			Name:           "exporter",
			Image:          "example.com/exporter:1.0",
			ReadinessProbe: &corev1.Probe{ProbeHandler: httpGet(intstr.FromInt32(probeAppPort))},
		}}},
	}
}

// probeApp is the app: gRPC (with the health service) and HTTP/1.1
// /healthz on the app port, HTTP/1.1 /healthz on the health port. It
// records the peer address of every /healthz request.
type probeApp struct {
	mu    sync.Mutex
	peers map[string][]string // "port /healthz" -> remote hosts
}

func (a *probeApp) healthz(port string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a.mu.Lock()
		a.peers[port] = append(a.peers[port], host)
		a.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}
}

func (a *probeApp) lastPeer(port string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.peers[port]; len(p) > 0 {
		return p[len(p)-1]
	}
	return ""
}

func redirectProbes(t *testing.T, bin string) {
	client := probeClientNetns(t)
	app := &probeApp{peers: map[string][]string{}}

	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	appMux := http.NewServeMux()
	appMux.HandleFunc("/healthz", app.healthz("app"))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	appSrv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		appMux.ServeHTTP(w, r)
	})}
	healthMux := http.NewServeMux()
	healthMux.HandleFunc("/healthz", app.healthz("health"))
	healthSrv := &http.Server{Handler: healthMux}
	serveHTTP(t, appSrv, listen(t, fmt.Sprintf("[::]:%d", probeAppPort)))
	serveHTTP(t, healthSrv, listen(t, fmt.Sprintf("[::]:%d", probeHealthPort)))

	args := injectedArgs(t, probedPod(), inject.InitRedirectName)
	if !strings.Contains(strings.Join(args, " "), fmt.Sprintf("--exclude-ports=%d", probeHealthPort)) {
		t.Fatalf("the injector did not leave the health port %d alone: %q", probeHealthPort, args)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH="}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init-redirect %q: %v\n%s", args, err, out)
	}
	sc := testtools.StartSidecar(t, "", "--mode", "redirect", "--listen", fmt.Sprintf("[::]:%d", inject.DefaultProxyPort), "--notify-addr", "")

	for _, server := range []string{"192.0.2.1", "2001:db8::1"} {
		if err := probeHTTP(client, server, probeHealthPort); err != nil {
			t.Errorf("HTTP probe on the health port of %s: %v", server, err)
		} else if got := app.lastPeer("health"); got == "127.0.0.1" || got == "::1" {
			t.Errorf("HTTP probe on the excluded health port went through the sidecar (the app saw %s)", got)
		}
		if err := probeHTTP(client, server, probeAppPort); err != nil {
			t.Errorf("HTTP/1.1 probe on the app port of %s: %v\nsidecar:\n%s", server, err, sc.Process.Output())
		} else if got := app.lastPeer("app"); got != "127.0.0.1" && got != "::1" {
			t.Errorf("HTTP/1.1 probe on the app port did not go through the sidecar (the app saw %s)", got)
		}
		if err := probeGRPC(client, server, probeAppPort); err != nil {
			t.Errorf("gRPC probe on the app port of %s: %v\nsidecar:\n%s", server, err, sc.Process.Output())
		}
		if err := probeTCP(client, server, probeAppPort); err != nil {
			t.Errorf("TCP probe on the app port of %s: %v", server, err)
		}
	}

	// The app stops: the probes through the sidecar must fail as they
	// would without it, not be answered by the sidecar.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = appSrv.Shutdown(ctx)
	if err := probeHTTP(client, "192.0.2.1", probeAppPort); err == nil {
		t.Error("HTTP/1.1 probe on the app port succeeded with the app stopped")
	}
	if err := probeGRPC(client, "192.0.2.1", probeAppPort); err == nil {
		t.Error("gRPC probe on the app port succeeded with the app stopped")
	}
	// The limit docs/mesh.md states: a TCP probe on the app port tests the
	// sidecar's accept. If this changes, change the documentation too.
	if err := probeTCP(client, "192.0.2.1", probeAppPort); err != nil {
		t.Errorf("TCP probe on the app port with the app stopped: %v; docs/mesh.md says it succeeds", err)
	}
}

func serveHTTP(t *testing.T, srv *http.Server, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// probeClientNetns makes the kubelet's side: a namespace joined to this
// one by a veth pair (192.0.2.0/24, 2001:db8::/64), and returns a dialer
// that makes its sockets there.
func probeClientNetns(t *testing.T) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	pid := clientHost(t, "hgk")
	nsPath := "/proc/" + pid + "/ns/net"
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return testtools.DialInNetns(ctx, nsPath, &net.Dialer{}, network, addr)
	}
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

const probeTimeout = 3 * time.Second

// probeHTTP is the kubelet's HTTP probe: HTTP/1.1 GET, 2xx or 3xx passes.
func probeHTTP(dial dialFunc, host string, port int) error {
	c := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s %s", resp.Proto, resp.Status)
	}
	return nil
}

// probeGRPC is the kubelet's gRPC probe: grpc.health.v1 Check over h2c.
func probeGRPC(dial dialFunc, host string, port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cc, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(host, strconv.Itoa(port)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// probeTCP is the kubelet's TCP probe: a connection that opens passes.
func probeTCP(dial dialFunc, host string, port int) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return c.Close()
}
