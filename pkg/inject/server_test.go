package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTLSServer serves an AdmissionServer's handler over TLS with httptest.
func newTLSServer(t *testing.T, s *AdmissionServer) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func podReview(t *testing.T, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("0d8f2c1e-1111-2222-3333-444455556666"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "apps",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, ts *httptest.Server, path, contentType string, body []byte) (int, admissionv1.AdmissionReview) {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rev admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
			t.Fatalf("decode response: %v", err)
		}
	}
	return resp.StatusCode, rev
}

func testPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example.com/greeter:1.0",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
}

func TestAdmissionServerReviews(t *testing.T) {
	s := &AdmissionServer{Routes: map[string]AdmissionHandler{
		PathMutate:                 &podMutator{cfg: DefaultConfig(testImage), native: true},
		PathMutateNamespaceEnabled: &podMutator{cfg: DefaultConfig(testImage), native: true, nsEnabled: true},
	}}
	ts := newTLSServer(t, s)
	tests := []struct {
		name      string
		path      string
		pod       *corev1.Pod
		allowed   bool
		patched   bool
		denialMsg string
	}{
		{name: "annotated", path: PathMutate, pod: testPod(map[string]string{AnnotationInject: "true"}), allowed: true, patched: true},
		{name: "not annotated", path: PathMutate, pod: testPod(nil), allowed: true},
		{name: "namespace enabled", path: PathMutateNamespaceEnabled, pod: testPod(nil), allowed: true, patched: true},
		{name: "namespace enabled, pod opts out", path: PathMutateNamespaceEnabled, pod: testPod(map[string]string{AnnotationInject: "false"}), allowed: true},
		{
			name: "bad keepalive", path: PathMutate,
			pod:       testPod(map[string]string{AnnotationInject: "true", AnnotationKeepaliveTime: "abc"}),
			denialMsg: `annotation hangup.dev/keepalive-time="abc": want a Go duration of at least 1s such as 30s`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, rev := post(t, ts, tc.path, "application/json", podReview(t, tc.pod))
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			r := rev.Response
			if r == nil || r.UID != "0d8f2c1e-1111-2222-3333-444455556666" {
				t.Fatalf("response missing or with the wrong UID: %+v", r)
			}
			if rev.Kind != "AdmissionReview" || rev.APIVersion != "admission.k8s.io/v1" {
				t.Errorf("review type %s/%s", rev.APIVersion, rev.Kind)
			}
			if r.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", r.Allowed, tc.allowed, r.Result)
			}
			if got := len(r.Patch) > 0; got != tc.patched {
				t.Errorf("patched = %v, want %v", got, tc.patched)
			}
			if tc.patched && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patch type %v, want JSONPatch", r.PatchType)
			}
			if tc.denialMsg != "" && (r.Result == nil || r.Result.Message != tc.denialMsg) {
				t.Errorf("denial %+v, want message %q", r.Result, tc.denialMsg)
			}
		})
	}
}

func TestAdmissionServerBadRequests(t *testing.T) {
	s := &AdmissionServer{Routes: map[string]AdmissionHandler{PathMutate: &podMutator{cfg: DefaultConfig(testImage)}}}
	ts := newTLSServer(t, s)
	tests := []struct {
		name        string
		contentType string
		body        string
		want        int
	}{
		{"wrong content type", "text/plain", "{}", http.StatusUnsupportedMediaType},
		{"not json", "application/json", "{", http.StatusBadRequest},
		{"no request", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _ := post(t, ts, PathMutate, tc.contentType, []byte(tc.body)); code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
		})
	}
	resp, err := ts.Client().Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz status %d", resp.StatusCode)
	}
}

// writePair writes a fresh self-signed serving pair for 127.0.0.1 into dir
// with the given modification time, and returns its CA pool and leaf serial.
func writePair(t *testing.T, dir string, mod time.Time) (*x509.CertPool, string) {
	t.Helper()
	ss, err := NewSelfSigned([]string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var certPEM bytes.Buffer
	for _, der := range ss.Cert.Certificate {
		pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ss.Cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for name, b := range map[string][]byte{"tls.crt": certPEM.Bytes(), "tls.key": keyPEM} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// Set the time explicitly: two writes within the file system's
		// timestamp granularity would otherwise look unchanged.
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ss.CAPEM)
	leaf, _ := x509.ParseCertificate(ss.Cert.Certificate[0])
	return pool, leaf.SerialNumber.String()
}

// servedSerial does one TLS handshake and returns the leaf's serial.
func servedSerial(t *testing.T, addr string, pool *x509.CertPool) string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestServeReloadsCertificate runs the real Serve with a cert dir: the pair
// is replaced on disk and the next handshake presents the new one, and
// cancelling the context stops the server.
func TestServeReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	pool1, serial1 := writePair(t, dir, base)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServerConfig{
			Listener: ln, CertDir: dir, NativeSidecars: "true", Sidecar: DefaultConfig(testImage),
			ShutdownTimeout: 5 * time.Second,
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not stop within 10s of cancel")
		}
	}()

	addr := ln.Addr().String()
	if got := servedSerial(t, addr, pool1); got != serial1 {
		t.Fatalf("serial %s, want %s", got, serial1)
	}
	pool2, serial2 := writePair(t, dir, base.Add(time.Minute))
	if got := servedSerial(t, addr, pool2); got != serial2 {
		t.Fatalf("after rotation serial %s, want the new %s", got, serial2)
	}
	// A broken pair keeps the last good one.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, pool2); got != serial2 {
		t.Fatalf("after a bad key serial %s, want the previous %s", got, serial2)
	}
}

func TestNewCertReloaderMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	if err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Errorf("got %v, want an error naming tls.crt", err)
	}
}

func TestMergeBundle(t *testing.T) {
	now := time.Now()
	mk := func(at time.Time, validity time.Duration) []byte {
		ss, err := NewSelfSigned([]string{"x"}, at, validity)
		if err != nil {
			t.Fatal(err)
		}
		return ss.CAPEM
	}
	own := mk(now, time.Hour)
	other := mk(now.Add(-time.Minute), time.Hour)
	expired := mk(now.Add(-3*time.Hour), time.Hour)
	count := func(b []byte) int { return bytes.Count(b, []byte("BEGIN CERTIFICATE")) }

	tests := []struct {
		name   string
		bundle []byte
		want   int
	}{
		{"empty", nil, 1},
		{"keeps the other replica's CA", other, 2},
		{"drops expired", append(append([]byte{}, other...), expired...), 2},
		{"no duplicate of own", append(append([]byte{}, own...), other...), 2},
		{"drops garbage", []byte("not pem"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := MergeBundle(tc.bundle, own, now)
			if n := count(got); n != tc.want {
				t.Errorf("%d certificates, want %d", n, tc.want)
			}
			if !bytes.HasPrefix(got, own) {
				t.Error("own CA is not first")
			}
			if again := MergeBundle(got, own, now); !bytes.Equal(again, got) {
				t.Error("merging twice changed the bundle")
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		var many []byte
		for i := range maxBundleCAs + 3 {
			many = append(many, mk(now.Add(-time.Duration(i+1)*time.Second), time.Hour)...)
		}
		if n := count(MergeBundle(many, own, now)); n != maxBundleCAs {
			t.Errorf("%d certificates, want at most %d", n, maxBundleCAs)
		}
	})
}

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		major, minor string
		want         bool
		wantErr      bool
	}{
		{"1", "28", false, false},
		{"1", "29", true, false},
		{"1", "30+", true, false},
		{"2", "0", true, false},
		{"1", "x", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.major+"."+tc.minor, func(t *testing.T) {
			got, err := versionAtLeast(tc.major, tc.minor, 1, 29)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestServerConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ServerConfig)
		want string
	}{
		{"self-managed without names", func(c *ServerConfig) { c.CertDir = "" }, "webhook configuration name"},
		{"no image", func(c *ServerConfig) { c.Sidecar.Image = "" }, "sidecar image"},
		{"root uid", func(c *ServerConfig) { c.Sidecar.UID = 0 }, "non-root"},
		{"short resync", func(c *ServerConfig) { c.CABundleResync = time.Millisecond }, "at least 1s"},
		{"bad native", func(c *ServerConfig) { c.NativeSidecars = "maybe" }, "want auto, true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ServerConfig{CertDir: t.TempDir(), Sidecar: DefaultConfig(testImage), Listener: nil, Addr: "127.0.0.1:0"}
			tc.edit(&cfg)
			err := Serve(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if errors.Is(err, context.Canceled) {
				t.Error("validation error reported as cancellation")
			}
		})
	}
}
