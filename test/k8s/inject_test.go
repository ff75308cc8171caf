//go:build linux

package k8s_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admregv1 "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/admin"
	"github.com/hangup-dev/hangup/pkg/inject"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go keeps one HTTP transport per TLS config in a process-wide
		// cache; its idle connections outlive the test by design.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreTopFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	)
}

const testImage = "hangup-dev/hangup:0.1.0"

// kubeVersion is what helm assumes for the chart's kubeVersion check; a helm
// built with go install would otherwise assume v1.20.0. It matches the
// kube-apiserver that install-tools.sh builds.
const kubeVersion = "v1.37.2"

// webhookConfig mirrors the chart's MutatingWebhookConfiguration with a URL
// client config: /mutate for namespaces without the label (minus those in
// skip), /mutate-namespace-enabled for labelled ones. only, when set,
// restricts both webhooks to that one namespace.
func webhookConfig(name, base string, skip []string, only string) *admissionregistrationv1.MutatingWebhookConfiguration {
	hook := func(hookName, path string, op metav1.LabelSelectorOperator) admissionregistrationv1.MutatingWebhook {
		nsSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: append([]string{"kube-system"}, skip...)},
			{Key: inject.LabelInject, Operator: op, Values: []string{inject.LabelInjectEnabled}},
		}}
		if only != "" {
			nsSel.MatchExpressions[0] = metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{only}}
		}
		return admissionregistrationv1.MutatingWebhook{
			Name:                    hookName,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			// Fail, so that a TLS or caBundle problem fails the test
			// instead of silently admitting pods without the sidecar.
			FailurePolicy:  ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds: ptr.To(int32(10)),
			ClientConfig:   admissionregistrationv1.WebhookClientConfig{URL: ptr.To(base + path)},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: nsSel,
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			hook("pods.inject.hangup.dev", inject.PathMutate, metav1.LabelSelectorOpNotIn),
			hook("namespaces.inject.hangup.dev", inject.PathMutateNamespaceEnabled, metav1.LabelSelectorOpIn),
		},
	}
}

// startWebhook registers a webhook configuration and runs inject.Serve
// in-process with self-managed certificates until the test ends. With
// registerLate the configuration is created after Serve started, as a chart
// install may do: Serve must add its CA once it appears.
func startWebhook(t *testing.T, c *cluster, adm admregv1.AdmissionregistrationV1Interface, name, native string, skip []string, only string, registerLate bool) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	register := func() {
		if _, err := adm.MutatingWebhookConfigurations().Create(ctx,
			webhookConfig(name, "https://"+ln.Addr().String(), skip, only), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create webhook configuration: %v", err)
		}
	}
	if !registerLate {
		register()
	}
	serve(t, c, ln, name, native)
	if registerLate {
		// Serve tries the caBundle once before it serves TLS: a completed
		// handshake means that attempt found no configuration.
		waitFor(t, "webhook serving TLS", 30*time.Second, func() (bool, error) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{InsecureSkipVerify: true}) // only probing that it serves
			if err != nil {
				return false, err
			}
			conn.Close()
			return true, nil
		})
		register()
	}
	return ln.Addr()
}

// serve runs inject.Serve with self-managed certificates on ln until the
// test ends.
func serve(t *testing.T, c *cluster, ln net.Listener, name, native string) {
	t.Helper()
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- inject.Serve(sctx, inject.ServerConfig{
			Listener:          ln,
			WebhookConfigName: name,
			Hosts:             []string{"127.0.0.1"},
			NativeSidecars:    native,
			RestConfig:        c.rest,
			Sidecar:           inject.DefaultConfig(testImage),
			CABundleResync:    time.Second,
			ShutdownTimeout:   5 * time.Second,
			Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("inject.Serve %s: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("inject.Serve %s did not stop within 15s", name)
		}
	})
}

func pod(name string, annotations map[string]string, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app", Image: "example.com/app:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: corev1.PodSpec{Containers: containers}}
}

func names(cs []corev1.Container) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

func TestCluster(t *testing.T) {
	c := startCluster(t)
	adm, err := admregv1.NewForConfig(c.rest)
	if err != nil {
		t.Fatal(err)
	}
	core, err := typedcorev1.NewForConfig(c.rest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	for ns, labels := range map[string]map[string]string{
		"plain":   nil,
		"enabled": {inject.LabelInject: inject.LabelInjectEnabled},
		"legacy":  nil,
		"hangup":  nil,
		// Pod Security "restricted": the port-mode sidecar must pass it.
		"restricted": {"pod-security.kubernetes.io/enforce": "restricted"},
	} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	nativeAddr := startWebhook(t, c, adm, "hangup-test", "auto", []string{"legacy", "hangup"}, "", false)
	startWebhook(t, c, adm, "hangup-test-legacy", "false", nil, "legacy", true)

	// The CA reaches the caBundle, and the webhook's serving certificate
	// verifies against it.
	var bundle []byte
	waitFor(t, "caBundle in the webhook configuration", 30*time.Second, func() (bool, error) {
		mwc, err := adm.MutatingWebhookConfigurations().Get(ctx, "hangup-test", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, wh := range mwc.Webhooks {
			if len(wh.ClientConfig.CABundle) == 0 {
				return false, errors.New("empty caBundle in " + wh.Name)
			}
		}
		bundle = mwc.Webhooks[0].ClientConfig.CABundle
		return true, nil
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatalf("caBundle is not PEM: %q", bundle)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", nativeAddr.String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("webhook certificate does not verify against the caBundle: %v", err)
	}
	conn.Close()

	// The API server reads webhook configurations through an informer: wait
	// until a dry-run create comes back injected in both namespaces.
	for _, ns := range []string{"plain", "legacy"} {
		waitFor(t, "API server calls the webhook in "+ns, 30*time.Second, func() (bool, error) {
			p, err := core.Pods(ns).Create(ctx, pod("probe", map[string]string{inject.AnnotationInject: "true"}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, err
			}
			return p.Annotations[inject.AnnotationInjected] == "true", errors.New("not injected yet")
		})
	}

	t.Run("pods", func(t *testing.T) { testPods(t, ctx, core) })
	t.Run("pod security restricted", func(t *testing.T) { testRestricted(t, ctx, core) })
	t.Run("fixtures", func(t *testing.T) { testFixtures(t, ctx, core) })
	t.Run("two replicas share the caBundle", func(t *testing.T) { testReplicas(t, ctx, c, adm) })
	t.Run("helm", func(t *testing.T) { testHelm(t, ctx, c) })
}

func testPods(t *testing.T, ctx context.Context, core typedcorev1.CoreV1Interface) {
	on := map[string]string{inject.AnnotationInject: "true"}
	tests := []struct {
		name      string
		ns        string
		pod       *corev1.Pod
		wantInit  string // init container names, in order
		wantMain  string // container names, in order
		wantError string
	}{
		{name: "annotated", ns: "plain", pod: pod("annotated", on), wantInit: "hangup-sidecar", wantMain: "app"},
		{name: "not annotated", ns: "plain", pod: pod("plain", nil), wantMain: "app"},
		{name: "namespace enabled", ns: "enabled", pod: pod("by-namespace", nil), wantInit: "hangup-sidecar", wantMain: "app"},
		{name: "namespace enabled, pod opts out", ns: "enabled", pod: pod("opt-out", map[string]string{inject.AnnotationInject: "false"}), wantMain: "app"},
		{
			name: "redirect mode", ns: "plain",
			pod:      pod("redirect", map[string]string{inject.AnnotationInject: "true", inject.AnnotationMode: "redirect"}),
			wantInit: "hangup-init-redirect,hangup-sidecar", wantMain: "app",
		},
		{
			name: "several containers and init containers", ns: "plain",
			pod: func() *corev1.Pod {
				p := pod("several", map[string]string{inject.AnnotationInject: "true", inject.AnnotationAppPort: "8080"},
					corev1.Container{Name: "app", Image: "example.com/app:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
					corev1.Container{Name: "metrics", Image: "example.com/exporter:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 9100}}})
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1.0"}}
				return p
			}(),
			wantInit: "hangup-sidecar,migrate", wantMain: "app,metrics",
		},
		{name: "regular sidecar before 1.29", ns: "legacy", pod: pod("legacy", on), wantMain: "hangup-sidecar,app"},
		{
			name: "already injected", ns: "plain",
			pod: pod("already", on,
				corev1.Container{Name: "hangup-sidecar", Image: testImage},
				corev1.Container{Name: "app", Image: "example.com/app:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}),
			wantMain: "hangup-sidecar,app",
		},
		{
			name: "bad annotation", ns: "plain",
			pod:       pod("bad", map[string]string{inject.AnnotationInject: "true", inject.AnnotationKeepaliveTime: "abc"}),
			wantError: `annotation hangup.dev/keepalive-time="abc": want a Go duration of at least 1s such as 30s`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := core.Pods(tc.ns).Create(ctx, tc.pod, metav1.CreateOptions{})
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("got %v, want a denial containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			got, err := core.Pods(tc.ns).Get(ctx, tc.pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n := names(got.Spec.InitContainers); n != tc.wantInit {
				t.Errorf("stored init containers %q, want %q", n, tc.wantInit)
			}
			if n := names(got.Spec.Containers); n != tc.wantMain {
				t.Errorf("stored containers %q, want %q", n, tc.wantMain)
			}
			injected := strings.Contains(tc.wantInit+","+tc.wantMain, "hangup-sidecar") && tc.name != "already injected"
			if (got.Annotations[inject.AnnotationInjected] == "true") != injected {
				t.Errorf("annotation %s = %q, injected %v", inject.AnnotationInjected, got.Annotations[inject.AnnotationInjected], injected)
			}
			for _, sc := range append(got.Spec.InitContainers, got.Spec.Containers...) {
				if sc.Name != inject.SidecarName || !injected {
					continue
				}
				native := strings.Contains(tc.wantInit, inject.SidecarName)
				if native != (sc.RestartPolicy != nil && *sc.RestartPolicy == corev1.ContainerRestartPolicyAlways) {
					t.Errorf("sidecar restartPolicy %v, native %v", sc.RestartPolicy, native)
				}
				if sc.SecurityContext == nil || sc.SecurityContext.RunAsUser == nil || *sc.SecurityContext.RunAsUser != inject.DefaultUID {
					t.Errorf("sidecar security context %+v", sc.SecurityContext)
				}
				checkDrainHook(t, got, sc)
			}
		})
	}
}

func testHelm(t *testing.T, ctx context.Context, c *cluster) {
	helm, kubectl := testtools.Bin(t, "helm"), testtools.Bin(t, "kubectl")
	chart := filepath.Join("..", "..", "deploy", "helm", "hangup")
	runTool := func(t *testing.T, stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, name, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return out
	}
	t.Run("lint", func(t *testing.T) {
		runTool(t, nil, helm, "lint", "--strict", "--kube-version", kubeVersion, chart)
	})
	dryRun := func(t *testing.T, manifests []byte) {
		t.Helper()
		out := runTool(t, manifests, kubectl, "--kubeconfig", c.kubeconfig, "apply", "--dry-run=server", "-f", "-")
		if !bytes.Contains(out, []byte("(server dry run)")) {
			t.Errorf("kubectl output lacks server dry run lines:\n%s", out)
		}
	}
	for _, tc := range []struct {
		name string
		set  string
	}{
		{"default values", ""},
		{"redirect mode, Fail policy, excluded namespaces", "sidecar.mode=redirect,webhook.failurePolicy=Fail,webhook.excludedNamespaces={a,b}"},
	} {
		t.Run("template "+tc.name, func(t *testing.T) {
			args := []string{"template", "hangup", chart, "--namespace", "hangup", "--kube-version", kubeVersion}
			if tc.set != "" {
				args = append(args, "--set", tc.set)
			}
			dryRun(t, runTool(t, nil, helm, args...))
		})
	}
	t.Run("committed manifests", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "manifests", "hangup.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		dryRun(t, b)
	})
	t.Run("examples", func(t *testing.T) {
		// Server dry run does not create the namespaces the files define.
		for _, ns := range []string{"greeter", "observability"} {
			runTool(t, nil, kubectl, "--kubeconfig", c.kubeconfig, "create", "namespace", ns)
		}
		for _, f := range []string{"greeter.yaml", "jaeger.yaml"} {
			b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "manifests", "examples", f))
			if err != nil {
				t.Fatal(err)
			}
			dryRun(t, b)
		}
	})
}

// testReplicas runs two webhooks on one configuration, as the chart's two
// replicas do: each has its own CA, and the bundle must end up trusting
// both, whichever patches first.
func testReplicas(t *testing.T, ctx context.Context, c *cluster, adm admregv1.AdmissionregistrationV1Interface) {
	const name = "hangup-test-replicas"
	// A namespace no pod is created in: only the caBundle matters here.
	if _, err := adm.MutatingWebhookConfigurations().Create(ctx,
		webhookConfig(name, "https://127.0.0.1:1", nil, "replicas-only"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		serve(t, c, ln, name, "true")
	}
	var pool *x509.CertPool
	waitFor(t, "both CAs in the caBundle", 30*time.Second, func() (bool, error) {
		mwc, err := adm.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, wh := range mwc.Webhooks {
			if n := bytes.Count(wh.ClientConfig.CABundle, []byte("BEGIN CERTIFICATE")); n != 2 {
				return false, fmt.Errorf("webhook %s has %d CAs", wh.Name, n)
			}
		}
		pool = x509.NewCertPool()
		pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle)
		return true, nil
	})
	for _, addr := range addrs {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Errorf("replica %s is not trusted by the bundle: %v", addr, err)
			continue
		}
		conn.Close()
	}
}

// testFixtures sends every pod fixture of pkg/inject/testdata through the
// real API server (dry run): the webhook's patch must pass the API server's
// pod validation, and denials must come back as denials.
// checkDrainHook checks, on a pod as the API server stored it, that every
// app container has the preStop hook that drains the sidecar, with the
// token the sidecar was given.
func checkDrainHook(t *testing.T, p *corev1.Pod, sidecar corev1.Container) {
	t.Helper()
	var token string
	for _, e := range sidecar.Env {
		if e.Name == "HANGUP_DRAIN_TOKEN" {
			token = e.Value
		}
	}
	if token == "" {
		t.Errorf("sidecar of %s has no HANGUP_DRAIN_TOKEN: env %v", p.Name, sidecar.Env)
	}
	for _, c := range p.Spec.Containers {
		if c.Name == inject.SidecarName {
			continue
		}
		var h *corev1.HTTPGetAction
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			h = c.Lifecycle.PreStop.HTTPGet
		}
		if h == nil || h.Path != admin.DrainPath || h.Port.IntVal != inject.DefaultAdminPort || len(h.HTTPHeaders) != 1 ||
			h.HTTPHeaders[0].Name != admin.DrainTokenHeader || h.HTTPHeaders[0].Value != token {
			t.Errorf("container %s of %s: preStop %+v; want GET %s on port %d with the sidecar's token", c.Name, p.Name, h, admin.DrainPath, inject.DefaultAdminPort)
		}
	}
}

func testFixtures(t *testing.T, ctx context.Context, core typedcorev1.CoreV1Interface) {
	files, err := filepath.Glob(filepath.Join("..", "..", "pkg", "inject", "testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var fx struct {
				Native          bool              `json:"native"`
				NamespaceLabels map[string]string `json:"namespaceLabels"`
				Pod             corev1.Pod        `json:"pod"`
			}
			if err := yaml.Unmarshal(b, &fx); err != nil {
				t.Fatal(err)
			}
			gb, err := os.ReadFile(strings.TrimSuffix(file, ".yaml") + ".golden.json")
			if err != nil {
				t.Fatal(err)
			}
			var golden struct {
				Patch  []any  `json:"patch"`
				Denied string `json:"denied"`
			}
			if err := json.Unmarshal(gb, &golden); err != nil {
				t.Fatal(err)
			}
			ns := "legacy"
			if fx.Native {
				ns = "plain"
				if fx.NamespaceLabels[inject.LabelInject] == inject.LabelInjectEnabled {
					ns = "enabled"
				}
			}
			p := fx.Pod
			p.Namespace = ""
			got, err := core.Pods(ns).Create(ctx, &p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if golden.Denied != "" {
				if err == nil || !strings.Contains(err.Error(), golden.Denied) {
					t.Fatalf("got %v, want the denial %q", err, golden.Denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("API server rejected the pod: %v", err)
			}
			if injected := got.Annotations[inject.AnnotationInjected] == "true" && fx.Pod.Annotations[inject.AnnotationInjected] == ""; injected != (golden.Patch != nil) {
				t.Errorf("injected %v, golden patch %v", injected, golden.Patch != nil)
			}
		})
	}
}

// testRestricted checks that the port-mode sidecar passes Pod Security
// "restricted" (the API server's PodSecurity admission runs after mutation),
// and that redirect mode, which needs root and NET_ADMIN, does not.
func testRestricted(t *testing.T, ctx context.Context, core typedcorev1.CoreV1Interface) {
	restrictedPod := func(name string, annotations map[string]string) *corev1.Pod {
		p := pod(name, annotations)
		p.Spec.SecurityContext = &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
		return p
	}
	got, err := core.Pods("restricted").Create(ctx, restrictedPod("port-mode", map[string]string{inject.AnnotationInject: "true"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("port mode pod rejected under restricted: %v", err)
	}
	if names(got.Spec.InitContainers) != inject.SidecarName {
		t.Fatalf("not injected: init containers %q", names(got.Spec.InitContainers))
	}
	_, err = core.Pods("restricted").Create(ctx, restrictedPod("redirect-mode",
		map[string]string{inject.AnnotationInject: "true", inject.AnnotationMode: "redirect"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("redirect mode under restricted: got %v, want a PodSecurity violation", err)
	}
}
