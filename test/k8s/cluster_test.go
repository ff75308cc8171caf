//go:build linux

// Package k8s_test runs the injector against a real kube-apiserver and etcd
// (no kubelet, no controllers: pods are stored, never run) on 127.0.0.1.
// The binaries come from ${HANGUP_CACHE:-$HOME/.cache/hangup}/bin, built by
// scripts/install-tools.sh.
package k8s_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// cluster is a running etcd and kube-apiserver.
type cluster struct {
	rest       *rest.Config
	kubeconfig string
	url        string
}

// freePort returns a port that was free on 127.0.0.1 a moment ago. The
// processes we start take ports as flags, so a listener cannot be handed
// over; a collision shows as a start failure, not a wrong result.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs a binary until the test ends; its output goes to a log
// file that is printed when the test fails. The returned channel is closed
// when the process exits, so that waiting for it fails fast.
func startProcess(t *testing.T, name string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- tail of %s:\n%s", filepath.Base(logPath), b)
		}
	})
	return done
}

// exited reports an error when done is closed.
func exited(name string, done <-chan struct{}) error {
	select {
	case <-done:
		return fmt.Errorf("%s exited", name)
	default:
		return nil
	}
}

// waitFor polls cond every 100ms until it is true or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, lastErr)
		}
		<-tick.C
	}
}

// pki is the test cluster's client CA and admin credentials.
type pki struct {
	dir                           string
	caFile, certFile, keyFile     string
	saPub, saKey                  string
	caPEM, adminCertPEM, adminKey []byte
}

func writePEM(t *testing.T, path, typ string, der []byte) []byte {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// newPKI makes a client CA, an admin client certificate in system:masters
// and the service account signing key.
func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hangup-test-client-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.caFile = filepath.Join(dir, "client-ca.crt")
	p.caPEM = writePEM(t, p.caFile, "CERTIFICATE", caDER)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.certFile = filepath.Join(dir, "admin.crt")
	p.adminCertPEM = writePEM(t, p.certFile, "CERTIFICATE", der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p.keyFile = filepath.Join(dir, "admin.key")
	p.adminKey = writePEM(t, p.keyFile, "EC PRIVATE KEY", keyDER)

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.saKey = filepath.Join(dir, "sa.key")
	writePEM(t, p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pubDER, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	p.saPub = filepath.Join(dir, "sa.pub")
	writePEM(t, p.saPub, "PUBLIC KEY", pubDER)
	return p
}

// startCluster starts etcd and kube-apiserver on 127.0.0.1 and waits until
// the API server is ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	etcd, apiserver := testtools.Bin(t, "etcd"), testtools.Bin(t, "kube-apiserver")
	p := newPKI(t)

	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdDone := startProcess(t, etcd,
		"--name=default", "--data-dir="+filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn",
	)
	waitFor(t, "etcd healthy", 30*time.Second, func() (bool, error) {
		if err := exited("etcd", etcdDone); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	})

	port := freePort(t)
	certDir := t.TempDir()
	apiDone := startProcess(t, apiserver,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port), "--cert-dir="+certDir,
		"--etcd-servers="+etcdURL,
		"--client-ca-file="+p.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		// No controller manager creates the default ServiceAccount.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
		// The lease reconciler refuses a loopback advertise address, and
		// there is no kubernetes Service to keep up to date here.
		"--endpoint-reconciler-type=none",
	)

	c := &cluster{url: fmt.Sprintf("https://127.0.0.1:%d", port)}
	c.rest = &rest.Config{
		Host: c.url,
		TLSClientConfig: rest.TLSClientConfig{
			// The API server's serving certificate is self-signed into
			// certDir at start; read it once it exists.
			CertData: p.adminCertPEM, KeyData: p.adminKey,
		},
		Timeout: 30 * time.Second,
		// client-go's default of 5 requests a second paces the tests.
		QPS: 100, Burst: 200,
	}
	servingCert := filepath.Join(certDir, "apiserver.crt")
	waitFor(t, "kube-apiserver ready", 90*time.Second, func() (bool, error) {
		if err := exited("kube-apiserver", apiDone); err != nil {
			t.Fatal(err)
		}
		ca, err := os.ReadFile(servingCert)
		if err != nil {
			return false, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		cert, err := tls.X509KeyPair(p.adminCertPEM, p.adminKey)
		if err != nil {
			return false, err
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1",
		}}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(c.url + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("/readyz status %d", resp.StatusCode)
		}
		c.rest.TLSClientConfig.CAData = ca
		return true, nil
	})

	c.kubeconfig = filepath.Join(p.dir, "kubeconfig")
	var kc bytes.Buffer
	b64 := base64.StdEncoding.EncodeToString
	fmt.Fprintf(&kc, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.url, b64(c.rest.TLSClientConfig.CAData), b64(p.adminCertPEM), b64(p.adminKey))
	if err := os.WriteFile(c.kubeconfig, kc.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}
