//go:build linux

package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
	"github.com/hangup-dev/hangup/pkg/inject"
)

// clientNS is the namespace of the client pods: not labelled, so the
// webhook leaves them alone, as a client elsewhere in the cluster is.
const clientNS = "hangup-clients"

// podClients runs the Go example's client (examples/go/client) in pods of
// their own, calling the app through its ClusterIP Service across the pod
// network: a cancelled stream, and a client whose pod is deleted with
// --grace-period=0 --force. The node has no cluster DNS, so the clients
// are given the Service's ClusterIP, not its name.
func podClients(t *testing.T, d *disconnects, chat chatv1.ChatServiceClient) {
	t.Helper()
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: clientNS}}
	apply(t, ns)

	// The test's own member of the chat tells the pod client to cancel:
	// a message to the room reaches every member.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	control, err := chat.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	join(t, control)

	d.run(t, time.Second, []string{"RST_STREAM"}, 1, func(t *testing.T) func() {
		startPodClient(t, "cancel-client", d.target)
		return func() {
			if err := control.Send(&chatv1.ChatRequest{Text: "cancel-client:cancel"}); err != nil {
				t.Fatal(err)
			}
		}
	})
	// Its connection stays open after the cancel: delete the pod, and wait
	// until its container is gone, so that the next scenario counts only
	// its own disconnects.
	before := d.metrics(t)
	kubectl(t, "-n", clientNS, "delete", "pod", "cancel-client", "--grace-period=1", "--timeout", podWait.String())
	d.waitMetrics(t, func(m metrics) bool { return m.active < before.active })

	// The kubelet kills the container some time after the API server
	// forgets the pod: a silent end is found within keepalive time and
	// timeout at the latest, whatever the kill looks like on the wire.
	d.run(t, keepalive+time.Second, []string{"CONNECTION_CLOSED", "CONNECTION_RESET", "KEEPALIVE_TIMEOUT"}, 2, func(t *testing.T) func() {
		startPodClient(t, "killed-client", d.target)
		return func() {
			kubectl(t, "-n", clientNS, "delete", "pod", "killed-client", "--grace-period=0", "--force", "--wait=false")
		}
	})
}

// apply applies one object, written as JSON to a file.
func apply(t *testing.T, obj any) {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "object.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "-f", path)
}

// startPodClient runs the client as pod name in clientNS, calling target,
// and returns once it has joined the chat (its log says so). The pod is
// deleted when the test ends, if it is still there.
func startPodClient(t *testing.T, name, target string) {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: clientNS, Labels: map[string]string{"app": "hangup-client"}},
		Spec: corev1.PodSpec{
			RestartPolicy:      corev1.RestartPolicyNever,
			EnableServiceLinks: ptr.To(false),
			SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532))},
			Containers: []corev1.Container{{
				Name:            "client",
				Image:           "localhost/hangup-example-go-client:cluster",
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"--target", target, "--name", name},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	start := time.Now()
	apply(t, pod)
	t.Cleanup(func() {
		_, _ = clusterErr("kubectl", "-n", clientNS, "delete", "pod", name, "--ignore-not-found", "--grace-period=0", "--force", "--wait=false")
	})
	deadline := start.Add(podWait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		// Logs fail until the container has started.
		out, _ := clusterErr("kubectl", "-n", clientNS, "logs", name)
		if strings.Contains(out, "joined ") {
			break
		}
		if time.Now().After(deadline) {
			desc, _ := clusterErr("kubectl", "-n", clientNS, "describe", "pod", name)
			t.Fatalf("client pod %s did not join the chat within %v; log:\n%s\n%s", name, podWait, out, desc)
		}
		<-tick.C
	}
	p := getPod(t, clientNS, name)
	if len(p.Spec.InitContainers) != 0 || p.Annotations[inject.AnnotationInjected] != "" {
		t.Errorf("client pod %s in the unlabelled namespace %s was injected: %v", name, clientNS, p.Spec.InitContainers)
	}
	fmt.Printf("  client pod %s (pod IP %s) joined %v after it was created\n", name, p.Status.PodIP, time.Since(start).Round(time.Millisecond))
}

// waitMetrics waits until the sidecar's metrics satisfy ok, for at most 5 s.
func (d *disconnects) waitMetrics(t *testing.T, ok func(metrics) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m := d.metrics(t)
		if ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s the sidecar relays %v connections, its disconnects by reason are %v", m.active, m.byReason)
		}
		<-tick.C
	}
}
