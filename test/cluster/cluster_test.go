//go:build linux

// Package cluster_test drives the user's path on a real one-node Kubernetes
// (scripts/cluster.sh): helm install of the chart, an injected Go example
// behind a ClusterIP Service, and clients that disconnect in every way,
// checked through the app's own Sessions RPC and the sidecar's metrics.
//
// It runs only with HANGUP_CLUSTER=1 (`make test-cluster`, as root): the
// node takes half a minute to start and needs a network namespace,
// containerd and kubelet. TestMain starts the node, and stops it and checks
// that nothing is left behind even when a test fails.
package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/admin"
	"github.com/hangup-dev/hangup/pkg/inject"
	"github.com/hangup-dev/hangup/pkg/ports"
)

const (
	// enableEnv set to 1 runs the tests (make test-cluster sets it).
	enableEnv = "HANGUP_CLUSTER"
	// keepEnv set to 1 leaves the node running after the tests, for a
	// person to poke at (make demo-cluster).
	keepEnv = "HANGUP_CLUSTER_KEEP"
	// clientEnv makes the test binary a chat client instead (see
	// clientMain): the killed and stopped client processes.
	clientEnv = "HANGUP_CLUSTER_CLIENT"
	// netnsPath is the node's network namespace (scripts/cluster.sh).
	netnsPath = "/run/netns/hangup-node"
	// demoNS is the labelled namespace of testdata/example-go.yaml.
	demoNS = "hangup-demo"
	// keepalive is the example's hangup.dev/keepalive-time plus
	// keepalive-timeout: a silent client is gone after at most this.
	keepalive = 3 * time.Second
	// webhookDeploy and webhookPods name the chart's webhook (release
	// "hangup" in hangup-system).
	webhookDeploy = "deploy/hangup-inject"
	webhookPods   = "app.kubernetes.io/instance=hangup,app.kubernetes.io/component=inject"
	// podWait bounds every wait for pods, rollouts and the chart.
	podWait = 3 * time.Minute
)

var script = filepath.Join("..", "..", "scripts", "cluster.sh")

func TestMain(m *testing.M) {
	if target := os.Getenv(clientEnv); target != "" {
		os.Exit(clientMain(target))
	}
	if os.Getenv(enableEnv) != "1" {
		os.Exit(m.Run()) // every test skips, saying how to run it
	}
	// A node left by a run that was killed before its down would make up
	// refuse: stop it first (down of nothing does nothing).
	if out, err := exec.Command(script, "down").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%s\ncluster down before up: %v\n", out, err)
		os.Exit(1)
	}
	start := time.Now()
	if out, err := exec.Command(script, "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%s\ncluster up: %v\n", out, err)
		down()
		os.Exit(1)
	}
	fmt.Printf("phase cluster-up %.1fs\n", time.Since(start).Seconds())
	code := m.Run()
	if os.Getenv(keepEnv) == "1" {
		printDemo()
		os.Exit(code)
	}
	if !down() && code == 0 {
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// printDemo says how to poke at the node the tests leave running.
func printDemo() {
	fmt.Print(`
The node is still running, with the chart, Jaeger and the injected Go example
(namespace hangup-demo, Service example-go). Try:

  scripts/cluster.sh kubectl -n hangup-demo get pods,svc
  scripts/cluster.sh kubectl -n hangup-demo logs deploy/example-go -c hangup-sidecar
  svc=$(scripts/cluster.sh kubectl -n hangup-demo get svc example-go -o jsonpath='{.spec.clusterIP}')
  scripts/cluster.sh exec ~/.cache/hangup/bin/grpcurl -plaintext -import-path examples/go/proto \
      -proto chat/v1/chat.proto $svc:8080 chat.v1.ChatService/Sessions
  scripts/cluster.sh exec ~/.cache/hangup/bin/grpcurl -plaintext -import-path examples/go/proto \
      -proto chat/v1/chat.proto -d @ $svc:8080 chat.v1.ChatService/Chat   # type {"text":"hi"}; Ctrl-C: a killed client
  scripts/cluster.sh kubectl get --raw \
      '/api/v1/namespaces/observability/services/jaeger:16686/proxy/api/traces?service=hangup-sidecar&limit=5'

Stop it with: scripts/cluster.sh down && scripts/cluster.sh check
`)
}

// down stops the node and reports whether nothing was left behind.
func down() bool {
	start := time.Now()
	out, err := exec.Command(script, "down").CombinedOutput()
	fmt.Printf("%sphase cluster-down %.1fs\n", out, time.Since(start).Seconds())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster down:", err)
		return false
	}
	out, err = exec.Command(script, "check").CombinedOutput()
	fmt.Printf("%s", out)
	return err == nil
}

// clusterDir is scripts/cluster.sh's state directory.
func clusterDir() string {
	if d := os.Getenv("HANGUP_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/tmp/hangup-cluster"
}

func requireCluster(t *testing.T) {
	t.Helper()
	if os.Getenv(enableEnv) != "1" {
		t.Skipf("set %s=1 to run against a real node: make test-cluster (root; starts scripts/cluster.sh)", enableEnv)
	}
}

// phase runs one step of the user's path as a subtest, prints its time, and
// stops the test when it fails: later steps need it.
func phase(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	start := time.Now()
	ok := t.Run(name, f)
	fmt.Printf("phase %s %.1fs\n", name, time.Since(start).Seconds())
	if !ok {
		t.FailNow()
	}
}

// cluster runs scripts/cluster.sh with args and returns its stdout.
func cluster(t *testing.T, args ...string) string {
	t.Helper()
	out, err := clusterErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func clusterErr(args ...string) (string, error) {
	cmd := exec.Command(script, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("cluster.sh %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return cluster(t, append([]string{"kubectl"}, args...)...)
}

// dumpOnFailure prints what a reader needs to see why a step failed: the
// pods, the events, and the logs of the webhook, the sidecar and the app.
func dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, args := range [][]string{
			{"get", "pods", "-A", "-o", "wide"},
			{"get", "events", "-A", "--sort-by=.lastTimestamp"},
			{"-n", "hangup-system", "logs", "deploy/hangup-inject", "--tail=50"},
			{"-n", demoNS, "logs", "deploy/example-go", "-c", inject.SidecarName, "--tail=80"},
			{"-n", demoNS, "logs", "deploy/example-go", "-c", "app", "--tail=80"},
		} {
			out, err := clusterErr(append([]string{"kubectl"}, args...)...)
			t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
		}
		// A pod the webhook never saw is explained only here.
		if log, err := os.ReadFile(filepath.Join(clusterDir(), "logs", "kube-apiserver.log")); err == nil {
			var calls []string
			for line := range strings.Lines(string(log)) {
				if strings.Contains(line, "webhook") && (strings.Contains(line, "failing open") || strings.Contains(line, "failed calling")) {
					calls = append(calls, line)
				}
			}
			t.Logf("kube-apiserver.log, failed webhook calls (last %d of %d):\n%s", min(len(calls), 10), len(calls), strings.Join(calls[max(0, len(calls)-10):], ""))
		}
	})
}

// waitInjecting waits, for at most podWait, until the API server's
// admission reaches the webhook: a pod created in demoNS, dry run, comes
// back injected. helm's --wait (and rollout status) return once the
// webhook's pod is Ready, but the API server calls it through its Service's
// ClusterIP, which kube-proxy routes only from its next sync on; a pod
// created in between is admitted without the sidecar (failurePolicy Ignore)
// and the webhook never hears of it. (A cold CI run met exactly that: the
// example Deployment's pod, created 1 s after helm returned, ran alone.)
func waitInjecting(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(podWait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := clusterErr("kubectl", "-n", demoNS, "run", "injection-probe", "--image=localhost/hangup-example-go:cluster",
			"--image-pull-policy=Never", "--restart=Never", "--port=8080", "--dry-run=server",
			"-o", `jsonpath={.metadata.annotations.hangup\.dev/injected}`)
		if err == nil && strings.TrimSpace(out) != "" {
			return
		}
		if err != nil && strings.Contains(err.Error(), "denied the request") {
			t.Fatalf("the webhook denied the probe pod: %v", err) // it was reached: waiting cannot help
		}
		if time.Now().After(deadline) {
			t.Fatalf("a pod created in %s is still not injected %v after the webhook was Ready (got %q, %v)", demoNS, podWait, out, err)
		}
		<-tick.C
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestCluster is the user's path, one phase after the other.
func TestCluster(t *testing.T) {
	requireCluster(t)
	dumpOnFailure(t)

	var otlp string
	phase(t, "jaeger", func(t *testing.T) { otlp = deployJaeger(t) })

	phase(t, "install", func(t *testing.T) {
		chart, err := filepath.Abs(filepath.Join("..", "..", "deploy", "helm", "hangup"))
		if err != nil {
			t.Fatal(err)
		}
		cluster(t, "helm", "install", "hangup", chart, "--namespace", "hangup-system", "--create-namespace",
			"--set", "image.repository=localhost/hangup", "--set", "image.webhookRepository=localhost/hangup-tools", "--set", "image.tag=cluster",
			"--set", "image.pullPolicy=Never", "--set", "replicaCount=1",
			"--set", "sidecar.otlpEndpoint="+otlp,
			"--wait", "--timeout", podWait.String())
		// The webhook added its self-managed CA to its configuration; the
		// API server trusts it only if that CA signed what the webhook
		// serves over its Service, which the injection below proves.
		bundle := kubectl(t, "get", "mutatingwebhookconfiguration", "-o", "jsonpath={.items[*].webhooks[*].clientConfig.caBundle}")
		if strings.TrimSpace(bundle) == "" {
			t.Fatal("the MutatingWebhookConfiguration has no caBundle after the webhook started")
		}
		// The webhook runs the hangup-tools image (the pod's image has no
		// inject); injected pods get the hangup image (checkInjected).
		if img := kubectl(t, "-n", "hangup-system", "get", "pods", "-o", "jsonpath={.items[*].spec.containers[*].image}"); strings.TrimSpace(img) != "localhost/hangup-tools:cluster" {
			t.Errorf("webhook pods run %q, want localhost/hangup-tools:cluster (image.webhookRepository)", img)
		}
		apply(t, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: demoNS, Labels: map[string]string{"hangup.dev/inject": "enabled"}},
		})
		waitInjecting(t)
	})

	var pod corev1.Pod
	phase(t, "pods-ready", func(t *testing.T) {
		kubectl(t, "apply", "-f", filepath.Join("testdata", "example-go.yaml"))
		kubectl(t, "-n", demoNS, "rollout", "status", "deploy/example-go", "--timeout", podWait.String())
		pod = onePod(t, demoNS, "app=example-go")
	})

	phase(t, "injected", func(t *testing.T) { checkInjected(t, &pod) })

	phase(t, "bad-annotation", func(t *testing.T) {
		out, err := clusterErr("kubectl", "-n", demoNS, "run", "bad-annotation", "--image=localhost/hangup-example-go:cluster",
			"--image-pull-policy=Never", "--port=8080", "--annotations=hangup.dev/keepalive-time=soon")
		if err == nil {
			kubectl(t, "-n", demoNS, "delete", "pod", "bad-annotation", "--wait=false")
			t.Fatalf("a pod with hangup.dev/keepalive-time=soon was admitted: %s", out)
		}
		for _, want := range []string{"hangup.dev/keepalive-time", `"soon"`, "want"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rejection %q does not name %s", err, want)
			}
		}
	})

	phase(t, "webhook-down", func(t *testing.T) {
		kubectl(t, "-n", "hangup-system", "scale", webhookDeploy, "--replicas=0")
		defer func() {
			kubectl(t, "-n", "hangup-system", "scale", webhookDeploy, "--replicas=1")
			kubectl(t, "-n", "hangup-system", "rollout", "status", webhookDeploy, "--timeout", podWait.String())
			waitInjecting(t)
		}()
		kubectl(t, "-n", "hangup-system", "wait", "--for=delete", "pod", "-l", webhookPods, "--timeout", podWait.String())
		// failurePolicy Ignore: the pod is created, without the sidecar.
		kubectl(t, "-n", demoNS, "run", "no-webhook", "--image=localhost/hangup-example-go:cluster",
			"--image-pull-policy=Never", "--port=8080")
		defer kubectl(t, "-n", demoNS, "delete", "pod", "no-webhook", "--wait=false")
		var p corev1.Pod
		if err := json.Unmarshal([]byte(kubectl(t, "-n", demoNS, "get", "pod", "no-webhook", "-o", "json")), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 || p.Annotations[inject.AnnotationInjected] != "" {
			t.Errorf("a pod created while the webhook was down was injected: init containers %v, annotations %v", p.Spec.InitContainers, p.Annotations)
		}
		// The API server says it let the pod through without the webhook.
		log, err := os.ReadFile(filepath.Join(clusterDir(), "logs", "kube-apiserver.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("failing open")) || !bytes.Contains(log, []byte("inject.hangup.dev")) {
			t.Errorf("kube-apiserver.log has no line about failing open on the hangup webhook")
		}
	})

	svc := strings.TrimSpace(kubectl(t, "-n", demoNS, "get", "service", "example-go", "-o", "jsonpath={.spec.clusterIP}"))
	target := net.JoinHostPort(svc, "8080")
	conn := dialService(t, target)
	defer conn.Close()
	chat := chatv1.NewChatServiceClient(conn)
	d := &disconnects{t: t, sessions: chatSessions(chat), pod: pod.Name, target: target}
	waitServing(t, d.sessions)
	// cancelledSession is "connection/stream" of the cancel scenario's stream.
	var cancelledSession string

	phase(t, "cancel", func(t *testing.T) {
		d.run(t, time.Second, []string{"RST_STREAM"}, 1, cancelled(chat, &cancelledSession))
	})
	phase(t, "killed-client", func(t *testing.T) {
		d.run(t, time.Second, []string{"CONNECTION_CLOSED", "CONNECTION_RESET"}, 2, func(t *testing.T) func() {
			p := startClient(t, target)
			return func() { p.signal(t, unix.SIGKILL) }
		})
	})
	phase(t, "silent-client", func(t *testing.T) {
		d.run(t, keepalive+time.Second, []string{"KEEPALIVE_TIMEOUT"}, 2, func(t *testing.T) func() {
			p := startClient(t, target)
			return func() { p.signal(t, unix.SIGSTOP) }
		})
	})
	phase(t, "client-goaway", func(t *testing.T) {
		d.run(t, time.Second, []string{"GOAWAY", "CONNECTION_CLOSED"}, 2, func(t *testing.T) func() {
			c := dialService(t, target)
			s, err := chatv1.NewChatServiceClient(c).Chat(context.Background())
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			join(t, s)
			return func() { c.Close() }
		})
	})
	phase(t, "normal-completion", func(t *testing.T) {
		before := d.metrics(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := chat.Chat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		join(t, s)
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: Recv = %v; want io.EOF (the app ended the stream with OK)", err)
		}
		d.waitSessions(t, 0, time.Second)
		// Events are delivered in order: once a cancelled stream's event
		// is through, an event for the completed stream would be too. The
		// two streams must add exactly the cancel's one disconnect.
		d.run(t, time.Second, []string{"RST_STREAM"}, 1, cancelled(chat, new(string)))
		if got := d.metrics(t).disconnects - before.disconnects; got != 1 {
			t.Errorf("a completed stream and a cancelled one: %v disconnects counted; want 1 (the completed one is no disconnect)", got)
		}
	})
	phase(t, "pod-clients", func(t *testing.T) { podClients(t, d, chat) })
	phase(t, "jaeger-spans", func(t *testing.T) {
		// A connection's span ends, and is exported, when it closes.
		conn.Close()
		checkSpans(t, cancelledSession)
	})
	phase(t, "redirect-mode", func(t *testing.T) { redirectMode(t) })
	phase(t, "volo-example", func(t *testing.T) { voloExample(t) })
	phase(t, "sidecar-restart", func(t *testing.T) { sidecarRestart(t, target, pod.Name) })
	phase(t, "rollout-restart", func(t *testing.T) { rolloutRestart(t, target, pod.Name) })
}

// redirectMode deploys the example in redirect mode behind a Service whose
// targetPort is the app's own port: the init container must have
// programmed the pod's redirect from the sidecar's image alone, and a
// cancel and a killed client through the Service must reach the app as
// events, as in port mode.
func redirectMode(t *testing.T) {
	t.Helper()
	kubectl(t, "apply", "-f", filepath.Join("testdata", "example-go-redirect.yaml"))
	kubectl(t, "-n", demoNS, "rollout", "status", "deploy/example-go-redirect", "--timeout", podWait.String())
	pod := onePod(t, demoNS, "app=example-go-redirect")
	init := containerStatus(t, &pod, inject.InitRedirectName)
	if init.State.Terminated == nil || init.State.Terminated.ExitCode != 0 {
		t.Fatalf("%s state %+v; want terminated with exit code 0", inject.InitRedirectName, init.State)
	}
	svc := strings.TrimSpace(kubectl(t, "-n", demoNS, "get", "service", "example-go-redirect", "-o", "jsonpath={.spec.clusterIP}"))
	target := net.JoinHostPort(svc, "8080")
	conn := dialService(t, target)
	defer conn.Close()
	chat := chatv1.NewChatServiceClient(conn)
	d := &disconnects{t: t, sessions: chatSessions(chat), pod: pod.Name, target: target}
	waitServing(t, d.sessions)
	d.run(t, time.Second, []string{"RST_STREAM"}, 1, cancelled(chat, new(string)))
	d.run(t, time.Second, []string{"CONNECTION_CLOSED", "CONNECTION_RESET"}, 2, func(t *testing.T) func() {
		p := startClient(t, target)
		return func() { p.signal(t, unix.SIGKILL) }
	})
	kubectl(t, "delete", "-f", filepath.Join("testdata", "example-go-redirect.yaml"), "--wait=false")
}

// rolloutRestart restarts the example's Deployment with a stream open
// through the Service. The old pod's termination runs the app's preStop
// hook, which drains the sidecar first: the client gets the graceful GOAWAY,
// its stream outlives the drain and is cut off, and the app, still
// running, receives its SHUTDOWN event; only then is the app stopped, and
// the sidecar after it. A new injected pod serves the Service.
func rolloutRestart(t *testing.T, target, oldPod string) {
	t.Helper()
	conn := dialService(t, target)
	defer conn.Close()
	chat := chatv1.NewChatServiceClient(conn)
	// The drain lasts the sidecar's --drain-timeout (15 s) once the new
	// pod is ready and the old one is deleted.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := chat.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session := join(t, s)
	statuses := watchPod(t, demoNS, oldPod)
	// The old sidecar exits within milliseconds of answering the hook,
	// too soon to read its metrics: follow its log while it runs.
	sidecarLog := follow(t, "-n", demoNS, "logs", "--follow", oldPod, "-c", inject.SidecarName)

	kubectl(t, "-n", demoNS, "rollout", "restart", "deploy/example-go")
	start := time.Now()
	_, err = s.Recv()
	ended := time.Since(start)
	if err == nil {
		t.Fatal("the stream to the restarted pod still delivers messages")
	}
	if ctx.Err() != nil {
		t.Fatalf("the stream to the old pod still open %v after the rollout restart", ended)
	}
	fmt.Printf("  the old pod's stream ended %v after the rollout restart: %v\n", ended.Round(time.Millisecond), err)
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.Contains(strings.ToLower(st.Message()), "goaway") {
		t.Errorf("the stream ended with %v; want UNAVAILABLE after the sidecar's GOAWAY", err)
	}
	kubectl(t, "-n", demoNS, "rollout", "status", "deploy/example-go", "--timeout", podWait.String())
	kubectl(t, "-n", demoNS, "wait", "--for=delete", "pod/"+oldPod, "--timeout", podWait.String())
	checkDrainLog(t, sidecarLog(), session)
	appDone, sidecarDone := statuses()
	switch {
	case appDone.IsZero() || sidecarDone.IsZero():
		t.Errorf("the old pod's last status: app finished %v, sidecar finished %v; want both terminated", appDone, sidecarDone)
	// One-second resolution: the sidecar must not have finished first.
	case sidecarDone.Before(appDone):
		t.Errorf("the old pod's sidecar finished at %v, before its app (%v)", sidecarDone, appDone)
	default:
		fmt.Printf("  the old pod's app finished at %s, its sidecar at %s\n", appDone.Format(time.TimeOnly), sidecarDone.Format(time.TimeOnly))
	}
	p := onePod(t, demoNS, "app=example-go")
	if p.Name == oldPod {
		t.Fatalf("pod %s still serves after the rollout restart", oldPod)
	}
	checkInjected(t, &p)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := chat.Sessions(rctx, &chatv1.SessionsRequest{})
		rcancel()
		if err == nil && r.GetSessions() == 0 {
			fmt.Printf("  new pod %s serves the Service %v after the rollout restart\n", p.Name, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the rollout: Sessions = %v, %v; want 0 sessions from the new pod", r.GetSessions(), err)
		}
		<-tick.C
	}
}

// checkDrainLog checks the old sidecar's log: the stream session
// ("connection/stream") was cut off with reason SHUTDOWN, and the drain
// ended with every event acknowledged by the app, which was still running
// (the kubelet stops the app only once the hook has its answer).
func checkDrainLog(t *testing.T, log []byte, session string) {
	t.Helper()
	conn, stream, _ := strings.Cut(session, "/")
	var cut, over bool
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "reason=SHUTDOWN") && strings.Contains(line, "scope=STREAM") &&
			strings.Contains(line, " conn="+conn+" ") && strings.Contains(line, " stream="+stream+" ") {
			cut = true
		}
		if strings.Contains(line, "drain over: the app acknowledged every event") {
			over = cut
		}
	}
	if !cut || !over {
		t.Fatalf("the old sidecar's log: SHUTDOWN of stream %s %v, then \"drain over\" with every event acknowledged %v; want both:\n%s", session, cut, over, log)
	}
	fmt.Printf("  the old sidecar cut stream %s off with reason SHUTDOWN, and the app acknowledged the event before its SIGTERM\n", session)
}

// watchPod watches pod name until the returned function is called, after
// the pod is gone; that function returns when the pod's app container and
// its sidecar finished, as the last status that showed them terminated
// said (zero when none did). The kubelet writes that status before it
// deletes the pod.
func watchPod(t *testing.T, ns, name string) func() (app, sidecar time.Time) {
	t.Helper()
	out := follow(t, "-n", ns, "get", "pod", name, "--watch", "-o", "json")
	return func() (app, sidecar time.Time) {
		dec := json.NewDecoder(bytes.NewReader(out()))
		for {
			var p corev1.Pod
			if dec.Decode(&p) != nil {
				return app, sidecar
			}
			for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				if s.State.Terminated == nil {
					continue
				}
				switch s.Name {
				case "app":
					app = s.State.Terminated.FinishedAt.Time
				case inject.SidecarName:
					sidecar = s.State.Terminated.FinishedAt.Time
				}
			}
		}
	}
}

// follow runs kubectl with args (a --watch or a --follow) in the
// background and returns a function that stops it, if it still runs, and
// returns what it printed.
func follow(t *testing.T, args ...string) func() []byte {
	t.Helper()
	cmd := exec.Command(script, append([]string{"kubectl"}, args...)...)
	// Its own process group: cluster.sh runs kubectl under nsenter, and
	// the whole group is stopped at the end.
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	stop := sync.OnceFunc(func() {
		select {
		case <-done:
		default:
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			<-done
		}
	})
	t.Cleanup(stop)
	return func() []byte {
		stop()
		return out.Bytes()
	}
}

// sidecarRestart kills the sidecar of a pod with a stream open through it:
// the client's stream fails, kubelet restarts the sidecar (and not the
// app), the app frees the session (its connection from the sidecar died),
// and the Service works again.
func sidecarRestart(t *testing.T, target, podName string) {
	t.Helper()
	conn := dialService(t, target)
	defer conn.Close()
	chat := chatv1.NewChatServiceClient(conn)
	// Bounds the Recv that must fail once the sidecar is killed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := chat.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	join(t, s)

	before := getPod(t, demoNS, podName)
	sidecar, app := containerStatus(t, &before, inject.SidecarName), containerStatus(t, &before, "app")
	id, ok := strings.CutPrefix(sidecar.ContainerID, "containerd://")
	if !ok {
		t.Fatalf("sidecar container id %q: want containerd://ID", sidecar.ContainerID)
	}
	cluster(t, "exec", "ctr", "--address", filepath.Join(clusterDir(), "run", "containerd.sock"),
		"-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id)
	start := time.Now()
	if _, err := s.Recv(); err == nil {
		t.Fatal("the stream through the killed sidecar still delivers messages")
	} else {
		fmt.Printf("  client's stream ended %v after the kill: %v\n", time.Since(start).Round(time.Millisecond), err)
	}

	// Kubelet restarts the sidecar alone; the app keeps running.
	deadline := time.Now().Add(podWait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p := getPod(t, demoNS, podName)
		sc, a := containerStatus(t, &p, inject.SidecarName), containerStatus(t, &p, "app")
		if a.RestartCount != app.RestartCount {
			t.Fatalf("the app restarted (%d -> %d) when only the sidecar was killed", app.RestartCount, a.RestartCount)
		}
		if sc.RestartCount > sidecar.RestartCount && sc.Ready {
			fmt.Printf("  sidecar restarted and ready %v after the kill\n", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not restarted and ready %v after the kill: %+v", podWait, sc)
		}
		<-tick.C
	}

	// The app's connection from the old sidecar died with it: the session
	// is gone, and the Service answers through the new sidecar.
	deadline = time.Now().Add(30 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := chat.Sessions(rctx, &chatv1.SessionsRequest{})
		rcancel()
		if err == nil && r.GetSessions() == 0 {
			fmt.Printf("  Sessions through the new sidecar: 0, %v after the kill\n", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the sidecar restarted: Sessions = %v, %v; want 0 sessions", r.GetSessions(), err)
		}
		<-tick.C
	}
}

func getPod(t *testing.T, ns, name string) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal([]byte(kubectl(t, "-n", ns, "get", "pod", name, "-o", "json")), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// containerStatus returns the status of the container or init container
// called name.
func containerStatus(t *testing.T, p *corev1.Pod, name string) corev1.ContainerStatus {
	t.Helper()
	for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("pod %s has no status for container %s", p.Name, name)
	return corev1.ContainerStatus{}
}

// cancelled opens a chat stream that the returned function cancels, and
// stores its session ("connection/stream") in session.
func cancelled(chat chatv1.ChatServiceClient, session *string) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		s, err := chat.Chat(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		*session = join(t, s)
		return cancel
	}
}

// deployJaeger runs deploy/manifests/examples/jaeger.yaml with the local
// Jaeger image and returns the OTLP/HTTP endpoint of its Service.
func deployJaeger(t *testing.T) string {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join("..", "..", "deploy", "manifests", "examples", "jaeger.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Replace the image line, keeping its indentation, and never pull.
	const upstream = "image: jaegertracing/jaeger:"
	i := bytes.Index(manifest, []byte(upstream))
	if i < 0 {
		t.Fatalf("jaeger.yaml has no %q line to replace with the local image", upstream)
	}
	lineStart := bytes.LastIndexByte(manifest[:i], '\n') + 1
	indent := string(manifest[lineStart:i])
	lineEnd := i + bytes.IndexByte(manifest[i:], '\n')
	var local bytes.Buffer
	local.Write(manifest[:lineStart])
	local.WriteString(indent + "image: localhost/jaeger:cluster\n" + indent + "imagePullPolicy: Never")
	local.Write(manifest[lineEnd:])
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, local.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", path)
	kubectl(t, "-n", "observability", "rollout", "status", "deploy/jaeger", "--timeout", podWait.String())
	// No cluster DNS on this node: the sidecar gets the Service's address.
	ip := strings.TrimSpace(kubectl(t, "-n", "observability", "get", "service", "jaeger", "-o", "jsonpath={.spec.clusterIP}"))
	return "http://" + net.JoinHostPort(ip, "4318")
}

// jaegerTrace is what checkSpans reads of a trace from Jaeger's query API.
type jaegerTrace struct {
	Spans []struct {
		OperationName string `json:"operationName"`
		Tags          []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
}

// checkSpans reads the cancelled stream's span, and its connection's span,
// back from Jaeger's query API through the API server's proxy to Jaeger's
// Service.
func checkSpans(t *testing.T, session string) {
	t.Helper()
	conn, stream, ok := strings.Cut(session, "/")
	if !ok {
		t.Fatalf("session %q: want connection/stream", session)
	}
	// One query an operation: the Sessions polls make many more traces.
	query := "/api/v1/namespaces/observability/services/jaeger:16686/proxy/api/traces?service=" + inject.SidecarName + "&limit=200&operation="
	operations := []string{"hangup.connection", "chat.v1.ChatService/Chat"}
	// The sidecar exports in batches (every 5 s by default): poll.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var traces []jaegerTrace
		for _, op := range operations {
			var resp struct {
				Data []jaegerTrace `json:"data"`
			}
			if err := json.Unmarshal([]byte(kubectl(t, "get", "--raw", query+url.QueryEscape(op))), &resp); err != nil {
				t.Fatal(err)
			}
			traces = append(traces, resp.Data...)
		}
		var names []string
		var connSpan, streamSpan string
		for _, tr := range traces {
			for _, sp := range tr.Spans {
				tags := map[string]string{}
				for _, tag := range sp.Tags {
					tags[tag.Key] = fmt.Sprint(tag.Value)
				}
				names = append(names, sp.OperationName)
				if tags["hangup.connection.id"] == conn {
					connSpan = sp.OperationName
				}
				if tags["http2.stream_id"] == stream && tags["hangup.disconnect.reason"] == "RST_STREAM" {
					streamSpan = sp.OperationName
				}
			}
		}
		if connSpan != "" && streamSpan != "" {
			fmt.Printf("  Jaeger has span %q of connection %s and span %q of its stream %s with hangup.disconnect.reason=RST_STREAM\n",
				connSpan, conn, streamSpan, stream)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s Jaeger has span of connection %s: %q, span of stream %s with reason RST_STREAM: %q; want both; spans of %s: %q",
				conn, connSpan, stream, streamSpan, inject.SidecarName, names)
		}
		<-tick.C
	}
}

// onePod returns the only running pod that selector matches.
func onePod(t *testing.T, ns, selector string) corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := json.Unmarshal([]byte(kubectl(t, "-n", ns, "get", "pods", "-l", selector, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	if len(pods) != 1 {
		t.Fatalf("pods matching %s in %s: %d; want 1", selector, ns, len(pods))
	}
	return pods[0]
}

// checkInjected checks what the webhook added to the example's pod, and
// that kubelet started the app only after the sidecar's startup probe
// passed (a native sidecar: an init container that keeps running).
func checkInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if pod.Annotations[inject.AnnotationInjected] == "" {
		t.Errorf("annotation %s missing: the pod was not injected (annotations %v)", inject.AnnotationInjected, pod.Annotations)
	}
	var sidecar *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == inject.SidecarName {
			sidecar = &pod.Spec.InitContainers[i]
		}
	}
	if sidecar == nil {
		t.Fatalf("no init container %s; init containers %v", inject.SidecarName, pod.Spec.InitContainers)
	}
	if sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s restartPolicy = %v; want Always (a native sidecar)", inject.SidecarName, sidecar.RestartPolicy)
	}
	if sidecar.StartupProbe == nil {
		t.Errorf("%s has no startup probe", inject.SidecarName)
	}
	if sidecar.Image != "localhost/hangup:cluster" || sidecar.ImagePullPolicy != corev1.PullNever {
		t.Errorf("%s image %s pull %s; want the chart's image values localhost/hangup:cluster, Never", inject.SidecarName, sidecar.Image, sidecar.ImagePullPolicy)
	}
	var proxyPort int32
	for _, p := range sidecar.Ports {
		if p.Name == "hangup-proxy" {
			proxyPort = p.ContainerPort
		}
	}
	if proxyPort != ports.Proxy {
		t.Errorf("%s port hangup-proxy = %d; want %d", inject.SidecarName, proxyPort, ports.Proxy)
	}

	// The app's preStop hook drains the sidecar before the app is stopped
	// (rolloutRestart sees it work).
	for _, c := range pod.Spec.Containers {
		if c.Name != "app" {
			continue
		}
		if h := c.Lifecycle; h == nil || h.PreStop == nil || h.PreStop.HTTPGet == nil ||
			h.PreStop.HTTPGet.Path != admin.DrainPath || h.PreStop.HTTPGet.Port.IntVal != ports.Admin {
			t.Errorf("app container's lifecycle %+v; want a preStop GET %s on port %d", c.Lifecycle, admin.DrainPath, ports.Admin)
		}
	}

	var sidecarStarted, appStarted time.Time
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == inject.SidecarName {
			if s.Started == nil || !*s.Started || s.State.Running == nil {
				t.Fatalf("%s status %+v; want running and started", inject.SidecarName, s)
			}
			sidecarStarted = s.State.Running.StartedAt.Time
		}
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == "app" && s.State.Running != nil {
			appStarted = s.State.Running.StartedAt.Time
		}
	}
	var initialized time.Time
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodInitialized && c.Status == corev1.ConditionTrue {
			initialized = c.LastTransitionTime.Time
		}
	}
	switch {
	case sidecarStarted.IsZero() || appStarted.IsZero() || initialized.IsZero():
		t.Fatalf("sidecar started %v, app started %v, pod initialized %v; want all three", sidecarStarted, appStarted, initialized)
	// Kubernetes' timestamps have a one-second resolution, hence !After
	// rather than Before.
	case sidecarStarted.After(appStarted):
		t.Errorf("app started at %v, before the sidecar (%v)", appStarted, sidecarStarted)
	case initialized.After(appStarted):
		t.Errorf("app started at %v, before the pod was initialized (%v), i.e. before the sidecar's startup probe passed", appStarted, initialized)
	}
	t.Logf("sidecar started %v, startup probe passed (pod initialized) %v, app started %v", sidecarStarted, initialized, appStarted)
}

// join sends a message on a new chat stream and waits for its echo, so that
// the app holds the session when it returns.
func join(t *testing.T, s chatv1.ChatService_ChatClient) string {
	t.Helper()
	if err := s.Send(&chatv1.ChatRequest{Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatalf("waiting for the echo of our message: %v", err)
	}
	return m.GetFrom()
}

// dialService makes a client of target (a Service's ClusterIP and port)
// whose connections start in the node's network namespace.
func dialService(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialInNode))
	if err != nil {
		t.Fatalf("client of %s: %v", target, err)
	}
	return conn
}

// dialInNode connects from the node's network namespace, where the Service's
// ClusterIP is routed (kube-proxy's rules live there).
func dialInNode(ctx context.Context, addr string) (net.Conn, error) {
	return testtools.DialInNetns(ctx, netnsPath, &net.Dialer{}, "tcp", addr)
}

// metrics are the sidecar's counters that matter here.
type metrics struct {
	delivered   float64
	disconnects float64
	byReason    map[string]float64
	// active is the client connections relayed now.
	active float64
}

// disconnects runs the disconnect scenarios against one pod.
type disconnects struct {
	t        *testing.T
	sessions func(ctx context.Context) (int64, error)
	pod      string
	target   string
}

// chatSessions is the Go example's Sessions RPC.
func chatSessions(chat chatv1.ChatServiceClient) func(ctx context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		r, err := chat.Sessions(ctx, &chatv1.SessionsRequest{})
		return r.GetSessions(), err
	}
}

// metrics reads the sidecar's /metrics through the API server's pod proxy.
func (d *disconnects) metrics(t *testing.T) metrics {
	t.Helper()
	raw := kubectl(t, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:%d/proxy/metrics", demoNS, d.pod, ports.Admin))
	m := metrics{byReason: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		name, labels, value, ok := parseSample(line)
		if !ok {
			continue
		}
		switch name {
		case "hangup_notify_delivered_total":
			m.delivered += value
		case "hangup_disconnects_total":
			m.disconnects += value
			m.byReason[labels["reason"]] += value
		case "hangup_connections_active":
			m.active += value
		}
	}
	return m
}

// parseSample parses one Prometheus text-format sample line.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || strings.HasPrefix(line, "#") {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", nil, 0, false
		}
		name, rest = line[:i], line[j+1:]
		for _, kv := range strings.Split(line[i+1:j], ",") {
			k, v, found := strings.Cut(kv, "=")
			if found {
				labels[k] = strings.Trim(v, `"`)
			}
		}
	} else {
		name, rest, _ = strings.Cut(line, " ")
	}
	if _, err := fmt.Sscan(strings.TrimSpace(rest), &value); err != nil {
		return "", nil, 0, false
	}
	return name, labels, value, true
}

// held asks the app how many sessions it holds, through the Service.
func (d *disconnects) held(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := d.sessions(ctx)
	if err != nil {
		t.Fatalf("Sessions: %v", err)
	}
	return n
}

// waitSessions waits until the app holds want sessions, for at most within
// (plus a second for the Sessions calls themselves), and returns how long
// that took.
func (d *disconnects) waitSessions(t *testing.T, want int64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within + time.Second)
	// The app has no way to tell us; poll it, each Sessions call a round
	// trip through the Service.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := d.held(t)
		if got == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app holds %d sessions %v after the disconnect; want %d within %v", got, time.Since(start).Round(time.Millisecond), want, within)
		}
		<-tick.C
	}
}

// run opens a session with open, ends it with the function open returns,
// and checks that the app frees it within the given time and that the
// sidecar counted the given number of disconnects (one for the stream, one
// more when the whole connection went), one with a reason in reasons, and
// delivered to the app.
func (d *disconnects) run(t *testing.T, within time.Duration, reasons []string, events float64, open func(t *testing.T) func()) {
	t.Helper()
	base := d.held(t)
	before := d.metrics(t)
	end := open(t)
	d.waitSessions(t, base+1, 5*time.Second)
	end()
	took := d.waitSessions(t, base, within)
	var after metrics
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		after = d.metrics(t)
		if after.delivered > before.delivered || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	if after.delivered <= before.delivered {
		t.Fatalf("hangup_notify_delivered_total stayed at %v: the app did not receive the event", before.delivered)
	}
	var seen []string
	for _, r := range reasons {
		if after.byReason[r] > before.byReason[r] {
			seen = append(seen, r)
		}
	}
	if len(seen) == 0 {
		t.Errorf("disconnects by reason went from %v to %v; want one more with a reason in %v", before.byReason, after.byReason, reasons)
	}
	if got := after.disconnects - before.disconnects; got != events {
		t.Errorf("%v disconnects counted; want %v", got, events)
	}
	fmt.Printf("  session freed %v after the disconnect (bound %v); reason %v; events delivered %v -> %v\n",
		took.Round(time.Millisecond), within, seen, before.delivered, after.delivered)
}

// client is a chat client process in the node's network namespace: the
// test binary itself, run by clientMain.
type client struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startClient starts a client process that joins the chat at target and
// holds its stream open until it is killed; it returns once joined.
func startClient(t *testing.T, target string) *client {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+netnsPath, "--", os.Args[0])
	cmd.Env = append(os.Environ(), clientEnv+"="+target)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &client{cmd: cmd, done: make(chan struct{})}
	joined := make(chan string, 1)
	go func() {
		defer close(c.done)
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		joined <- line
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGKILL)
		cmd.Process.Signal(unix.SIGCONT)
		<-c.done
	})
	select {
	case line := <-joined:
		if !strings.HasPrefix(line, "joined ") {
			t.Fatalf("client: %q; stderr: %s", line, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("client did not join within 30s; stderr: %s", stderr.String())
	}
	return c
}

// signal sends sig to the client process (nsenter execs it, so the PID is
// the client's own).
func (c *client) signal(t *testing.T, sig unix.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// clientMain joins the chat at target, prints "joined FROM", and holds the
// stream open until the process is killed.
func clientMain(target string) int {
	conn, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := chatv1.NewChatServiceClient(conn).Chat(ctx)
	if err == nil {
		err = s.Send(&chatv1.ChatRequest{Text: "hello"})
	}
	var m *chatv1.ChatResponse
	if err == nil {
		m, err = s.Recv()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	fmt.Printf("joined %s\n", m.GetFrom())
	<-ctx.Done()
	return 0
}
