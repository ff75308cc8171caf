//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// The peers, in the order the report lists them. Direct is the app itself;
// tcprelay is the byte-forwarding limit; the rest are HTTP/2-aware proxies.
const (
	Direct   = "direct"
	TCPRelay = "tcprelay"
	Hangup   = "hangup"
	HAProxy  = "haproxy"
	Nginx    = "nginx"
	Nghttpx  = "nghttpx"
)

// AllPeers lists every peer bench/compare knows.
var AllPeers = []string{Direct, TCPRelay, Hangup, HAProxy, Nginx, Nghttpx}

// readyTimeout bounds how long a peer may take to answer its first call.
const readyTimeout = 20 * time.Second

// installHint says how to get each external binary.
var installHint = map[string]string{
	"haproxy": "scripts/install-debs.sh (Debian package haproxy)",
	"nginx":   "scripts/install-debs.sh (Debian package nginx)",
	"nghttpx": "scripts/install-debs.sh (Debian package nghttp2-proxy)",
	"h2load":  "scripts/install-debs.sh (Debian package nghttp2-client)",
}

// findBin locates an external program on PATH or in the sbin directories (haproxy and nginx live there and a non-root
// PATH often lacks them). A missing one is an error naming the install
// command.
func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (not on PATH nor in /usr/sbin): run %s", name, installHint[name])
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Peer is one running path to the app: its address and, for a proxy, its
// process (in a process group of its own, so that forked workers are
// stopped with it).
type Peer struct {
	Name string
	Addr string // host:port clients connect to
	Pid  int    // 0 for direct
	// AdminAddr is hangup's admin server (/healthz, /metrics); "" for the
	// other peers.
	AdminAddr string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, valid after done
	log  string        // the file its output goes to
}

// PeerEnv is what starting a peer needs.
type PeerEnv struct {
	Dir        string   // the run's temporary directory; each peer gets Dir/NAME
	AppAddr    string   // the app's host:port
	NotifyAddr string   // hangup's DisconnectNotify receiver; "" disables
	SidecarBin string   // from BuildBinaries
	RelayBin   string   // from BuildBinaries
	MaxConns   int      // most client connections a peer must hold at once
	HangupArgs []string // more flags for `sidecar proxy`
	HangupEnv  []string // more environment for `sidecar proxy` (NAME=value)
}

// StartPeer starts the named peer in front of the app and waits until a
// gRPC call through it succeeds. Stop it with Stop.
func StartPeer(ctx context.Context, name string, env PeerEnv) (*Peer, error) {
	if name == Direct {
		return &Peer{Name: Direct, Addr: env.AppAddr}, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := filepath.Join(env.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var bin, admin string
	var args []string
	switch name {
	case TCPRelay:
		bin, args = env.RelayBin, []string{"-listen", addr, "-upstream", env.AppAddr}
	case Hangup:
		adminPort, err := freePort()
		if err != nil {
			return nil, err
		}
		bin, admin = env.SidecarBin, "127.0.0.1:"+strconv.Itoa(adminPort)
		args = append([]string{"proxy", "--listen", addr, "--upstream", env.AppAddr,
			"--admin", admin, "--notify-addr", env.NotifyAddr, "--log-level", "warn"}, env.HangupArgs...)
	case HAProxy:
		if bin, err = findBin("haproxy"); err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(haproxyConfig(addr, env.AppAddr, env.MaxConns)), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", cfg, err)
		}
		args = []string{"-db", "-f", cfg}
	case Nginx:
		if bin, err = findBin("nginx"); err != nil {
			return nil, err
		}
		cfg := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(cfg, []byte(nginxConfig(dir, addr, env.AppAddr, env.MaxConns)), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", cfg, err)
		}
		args = []string{"-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log")}
	case Nghttpx:
		if bin, err = findBin("nghttpx"); err != nil {
			return nil, err
		}
		args = nghttpxArgs(dir, port, env.AppAddr)
	default:
		return nil, fmt.Errorf("unknown peer %q: want one of %s", name, strings.Join(AllPeers, ", "))
	}
	p := &Peer{Name: name, Addr: addr, AdminAddr: admin, log: filepath.Join(dir, "output.log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p.log, err)
	}
	p.cmd = exec.Command(bin, args...)
	if name == Hangup && len(env.HangupEnv) > 0 {
		p.cmd.Env = append(os.Environ(), env.HangupEnv...)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s %q: %w", bin, args, err)
	}
	p.Pid = p.cmd.Process.Pid
	// The waiter is owned by Stop, which waits for done.
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	if err := p.waitReady(ctx); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s (%s %s) not ready: %w\n%s", name, bin, strings.Join(args, " "), err, p.Output())
	}
	return p, nil
}

// Output returns what the peer wrote to stdout, stderr and (nginx) its
// error log, for error messages.
func (p *Peer) Output() string {
	if p.log == "" {
		return ""
	}
	b, _ := os.ReadFile(p.log)
	e, _ := os.ReadFile(filepath.Join(filepath.Dir(p.log), "error.log"))
	return string(b) + string(e)
}

// waitReady retries an EmptyCall through the peer until it succeeds. It
// abandons no call in flight: a call cancelled while the peer holds it is
// a client disconnect, which hangup reports (RST_STREAM) to a soak that
// never caused it. A call ends when the peer answers, exits, or
// readyTimeout passes.
func (p *Peer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	go func() { // the peer's exit ends a call at once
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	cc, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("client for %s: %w", p.Addr, err)
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	// A peer whose upstream is not ready yet answers with an error: ask
	// again shortly, not in a busy loop.
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	var last error
	for {
		_, last = c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true))
		if last == nil {
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no successful call within %s: %w", readyTimeout, last)
		}
		<-retry.C
	}
	// The load generator sees only HTTP status 200; this call shows that the
	// peer relays the very request it sends, trailers included.
	resp, err := c.UnaryCall(ctx, unaryRequest())
	if err != nil {
		return fmt.Errorf("UnaryCall: %w", err)
	}
	if n := len(resp.GetPayload().GetBody()); n != unaryResponseSize {
		return fmt.Errorf("UnaryCall answered %d payload bytes, want %d", n, unaryResponseSize)
	}
	return nil
}

// Stop kills the peer's process group and waits for the peer to exit.
func (p *Peer) Stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Usage reads the CPU and memory of the peer's processes; direct has none.
func (p *Peer) Usage() (ProcUsage, error) {
	if p.Pid == 0 {
		return ProcUsage{}, errors.New("direct has no proxy process")
	}
	return Usage(p.Pid)
}

// haproxyConfig is HTTP mode with h2c on both sides, so that haproxy parses
// and re-encodes every frame like hangup does (mode tcp would only splice).
// maxconn counts client connections; haproxy sizes its fd limit from it and
// refuses to start when it cannot get it.
func haproxyConfig(listen, app string, maxConns int) string {
	return fmt.Sprintf(`global
    maxconn %[3]d
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend fe
    bind %[1]s proto h2
    default_backend be
backend be
    server app %[2]s proto h2
`, listen, app, maxConns+256)
}

// nginxConfig is nginx as a gRPC proxy (grpc_pass) on h2c, run as the
// current user inside dir. keepalive_requests replaces http2_max_requests
// (since 1.19.7): without raising it nginx closes a load generator's
// connection after 1000 requests.
func nginxConfig(dir, listen, app string, maxConns int) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // else workers run as nobody and cannot use dir
	}
	return fmt.Sprintf(`%[4]s
daemon off;
worker_processes auto;
worker_rlimit_nofile %[5]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections %[5]d; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 1h;
    http2_idle_timeout 1h;
    http2_recv_timeout 1h;
    http2_max_concurrent_streams 1024;
    client_max_body_size 0;
    upstream app {
        server %[3]s;
        keepalive 1024;
        keepalive_requests 1000000000;
    }
    server {
        listen %[2]s http2;
        location / {
            grpc_pass grpc://app;
            grpc_read_timeout 1h;
            grpc_send_timeout 1h;
        }
    }
}
`, dir, listen, app, user, fdsFor(maxConns))
}

// nghttpxArgs runs nghttpx with h2c on both sides and two workers (the
// machine's cores; its default is one).
func nghttpxArgs(dir string, port int, app string) []string {
	host, appPort, _ := net.SplitHostPort(app)
	return []string{
		"--conf=/dev/null",
		fmt.Sprintf("--frontend=127.0.0.1,%d;no-tls", port),
		fmt.Sprintf("--backend=%s,%s;;proto=h2", host, appPort),
		"--workers=2",
		"--frontend-http2-read-timeout=1h",
		"--frontend-keep-alive-timeout=1h",
		"--backend-read-timeout=1h",
		"--backend-write-timeout=1h",
		"--stream-read-timeout=0",
		"--stream-write-timeout=0",
		"--pid-file=" + filepath.Join(dir, "nghttpx.pid"),
		"--errorlog-file=" + filepath.Join(dir, "error.log"),
		"--accesslog-file=/dev/null",
		"--no-via",
	}
}
