package e2e

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/inject"
	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// TestInjectedRTTArgs: the built sidecar, run with the arguments the
// injector writes for hangup.dev/rtt-interval at the sidecar's minimum and
// hangup.dev/rtt-header "true", starts, measures a grpc-go client once a
// second (the keepalive PINGs alone, at their 30s default, would give one
// sample in the test's time) and gives the app x-hangup-rtt-us.
func TestInjectedRTTArgs(t *testing.T) {
	app, appAddr := startApp(t)
	_, appPort, err := net.SplitHostPort(appAddr)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: "apps", Annotations: map[string]string{
			inject.AnnotationInject:      "true",
			inject.AnnotationAppPort:     appPort,
			inject.AnnotationRTTInterval: keepalive.MinDuration.String(),
			inject.AnnotationRTTHeader:   "true",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/greeter:1.0"}}},
	}
	// The pod's addresses are the test's: StartSidecar gives the listen,
	// admin and upstream addresses, and no DisconnectNotify runs here.
	var args []string
	for _, a := range injectedArgs(t, pod, inject.SidecarName)[1:] {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--listen", "--admin", "--upstream", "--notify-addr":
		default:
			args = append(args, a)
		}
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
	}
	if !has("--rtt-interval=") || !has("--rtt-header=") {
		t.Fatalf("injected args %q lack the RTT flags", args)
	}
	sc := testtools.StartSidecar(t, appAddr, append(args, "--notify-addr", "", "--log-level", "debug", "--log-format", "json")...)

	client := grpcClient(t, sc.Addr)
	ctx := ctxT(t, 30*time.Second)
	answeredStream(t, ctx, client)
	const want = 3 // the PING after the preface, then two a second apart
	waitFor(t, 10*time.Second, "3 RTT samples", func() bool {
		return len(rttSamples(t, sc.Process.Output(), "")) >= want
	})

	if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	for {
		call := waitCall(t, app, 10*time.Second)
		if call.Method == "/grpc.testing.TestService/EmptyCall" {
			t.Logf("injected %q; the app got x-hangup-rtt-us %s", args, rttHeader(t, call))
			return
		}
	}
}

// injectedArgs returns the arguments the injector, with its defaults,
// writes for the container called name (inject.SidecarName,
// inject.InitRedirectName) in pod, on a cluster with native sidecars.
func injectedArgs(t *testing.T, pod *corev1.Pod, name string) []string {
	t.Helper()
	cfg := inject.DefaultConfig("hangup-dev/hangup:test")
	ops, err := inject.Patch(inject.Request{Pod: pod, NativeSidecars: true}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		cs, ok := op.Value.([]corev1.Container)
		if !ok {
			continue
		}
		for _, c := range cs {
			if c.Name == name {
				return c.Args
			}
		}
	}
	t.Fatalf("no %s container in the patch %+v", name, ops)
	return nil
}
