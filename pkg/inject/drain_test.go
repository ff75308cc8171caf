package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hangup-dev/hangup/pkg/admin"
)

// checkDrainHooks checks the preStop hooks of a patched pod: every app
// container without one of its own has the drain hook, with the token the
// sidecar is given, unless the pod opted out; a hook of the app's own is
// kept as it was.
func checkDrainHooks(t *testing.T, in, out *corev1.Pod, sidecar *corev1.Container) {
	t.Helper()
	optedOut := in.Annotations[AnnotationDrainHook] == "false"
	hooked := 0
	for i, c := range out.Spec.Containers {
		if c.Name == SidecarName {
			continue
		}
		orig := in.Spec.Containers[indexOf(in.Spec.Containers, c.Name)]
		var pre *corev1.LifecycleHandler
		if c.Lifecycle != nil {
			pre = c.Lifecycle.PreStop
		}
		switch {
		case orig.Lifecycle != nil && orig.Lifecycle.PreStop != nil:
			if !reflect.DeepEqual(pre, orig.Lifecycle.PreStop) {
				t.Errorf("container %s: its own preStop %+v became %+v", c.Name, orig.Lifecycle.PreStop, pre)
			}
		case optedOut:
			if pre != nil {
				t.Errorf("container %s of a pod with %s=false got a preStop hook %+v", c.Name, AnnotationDrainHook, pre)
			}
		default:
			h := pre
			if h == nil || h.HTTPGet == nil || h.HTTPGet.Path != admin.DrainPath || h.HTTPGet.Port.IntVal != DefaultAdminPort ||
				len(h.HTTPGet.HTTPHeaders) != 1 || h.HTTPGet.HTTPHeaders[0] != (corev1.HTTPHeader{Name: admin.DrainTokenHeader, Value: testDrainToken}) {
				t.Errorf("container %d %s: preStop %+v; want GET %s on port %d with the pod's token", i, c.Name, pre, admin.DrainPath, DefaultAdminPort)
			}
			if orig.Lifecycle != nil && !reflect.DeepEqual(c.Lifecycle.PostStart, orig.Lifecycle.PostStart) {
				t.Errorf("container %s: postStart %+v became %+v", c.Name, orig.Lifecycle.PostStart, c.Lifecycle.PostStart)
			}
			hooked++
		}
	}
	var token []string
	for _, e := range sidecar.Env {
		if e.Name == drainTokenEnv {
			token = append(token, e.Value)
		}
	}
	if want := map[bool]string{true: testDrainToken}[hooked > 0]; strings.Join(token, ",") != want {
		t.Errorf("%d containers hooked, sidecar %s=%q; want %q", hooked, drainTokenEnv, token, want)
	}
}

// TestOwnPreStop checks which containers the webhook warns about.
func TestOwnPreStop(t *testing.T) {
	own := corev1.Container{Name: "own", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Sleep: &corev1.SleepAction{Seconds: 5}}}}
	postStartOnly := corev1.Container{Name: "post", Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
		Sleep: &corev1.SleepAction{Seconds: 1}}}}
	plain := corev1.Container{Name: "plain"}
	tests := []struct {
		name        string
		annotations map[string]string
		containers  []corev1.Container
		want        []string
	}{
		{"none has one", nil, []corev1.Container{plain, postStartOnly}, nil},
		{"one of two has one", nil, []corev1.Container{plain, own}, []string{"own"}},
		{"opted out", map[string]string{AnnotationDrainHook: "false"}, []corev1.Container{own}, nil},
		{"bad annotation: Patch denies, nothing to warn of", map[string]string{AnnotationDrainHook: "no"}, []corev1.Container{own}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{}
			pod.Annotations = tt.annotations
			pod.Spec.Containers = tt.containers
			if got := OwnPreStop(pod); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("OwnPreStop = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestAdmitDrainHook checks what the webhook's admission adds around the
// hook: a fresh token for each pod, and a warning (and a log line) naming
// the containers that keep their own preStop.
func TestAdmitDrainHook(t *testing.T) {
	own := corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}}
	plain := corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}
	tests := []struct {
		name        string
		container   corev1.Container
		wantWarning string
		wantToken   bool
	}{
		{"plain app: hook and token, no warning", plain, "", true},
		{"own preStop: warned, logged, no token", own, `containers ["app"] have a preStop hook of their own`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			m := &podMutator{cfg: DefaultConfig(testImage), native: true, log: slog.New(slog.NewTextHandler(&log, nil))}
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{tt.container}}}
			pod.Name = "greeter"
			pod.Annotations = map[string]string{AnnotationInject: "true"}
			var tokens []string
			for range 2 {
				var rev admissionv1.AdmissionReview
				if err := json.Unmarshal(podReview(t, pod), &rev); err != nil {
					t.Fatal(err)
				}
				resp := m.Admit(context.Background(), rev.Request)
				if !resp.Allowed {
					t.Fatalf("denied: %v", resp.Result)
				}
				if got := strings.Join(resp.Warnings, "\n"); !strings.Contains(got, tt.wantWarning) || (tt.wantWarning == "") != (got == "") {
					t.Errorf("warnings %q; want one containing %q", resp.Warnings, tt.wantWarning)
				}
				var ops []Operation
				if err := json.Unmarshal(resp.Patch, &ops); err != nil {
					t.Fatal(err)
				}
				for _, op := range ops {
					if op.Path != "/spec/initContainers" {
						continue
					}
					var inits []corev1.Container
					if b, err := json.Marshal(op.Value); err != nil || json.Unmarshal(b, &inits) != nil {
						t.Fatalf("init containers %v: %v", op.Value, err)
					}
					for _, e := range inits[0].Env {
						if e.Name == drainTokenEnv {
							tokens = append(tokens, e.Value)
						}
					}
				}
			}
			if !tt.wantToken {
				if len(tokens) != 0 {
					t.Errorf("sidecar given drain tokens %q; want none (no container has the hook)", tokens)
				}
				if !strings.Contains(log.String(), "no drain hook") || !strings.Contains(log.String(), "greeter") {
					t.Errorf("log %q; want a line naming the pod and why it has no drain hook", log.String())
				}
				return
			}
			if len(tokens) != 2 || tokens[0] == tokens[1] || len(tokens[0]) < 16 {
				t.Errorf("drain tokens of two admissions %q; want two different ones of 16 characters or more", tokens)
			}
		})
	}
}
