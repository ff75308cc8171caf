package inject

import (
	"crypto/rand"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hangup-dev/hangup/pkg/admin"
)

// AnnotationDrainHook "false" leaves the app's containers without the
// preStop hook that drains the sidecar first. Default "true".
//
// With the hook, a pod's termination goes: the kubelet runs the hook, a GET
// of the sidecar's /drain, which sends clients the graceful GOAWAY, lets
// streams run for --drain-timeout, cuts off the rest with SHUTDOWN events
// and answers once those went out to the app, still running; then the
// kubelet sends the app SIGTERM, and stops the sidecar after it. Without
// it, a native sidecar is stopped after the app, so a stream still open
// when the app exits ends with the app and the app hears nothing of it.
const AnnotationDrainHook = "hangup.dev/drain-hook"

// drainTokenEnv passes the pod's drain token to the sidecar: the
// environment form of its --drain-token flag, kept out of its arguments.
const drainTokenEnv = "HANGUP_DRAIN_TOKEN"

// NewDrainToken returns a fresh token for Request.DrainToken: the webhook
// makes one for each pod, so that only that pod's kubelet hook can drain
// its sidecar from outside the pod.
func NewDrainToken() string { return rand.Text() }

// drainHookWanted reads AnnotationDrainHook.
func drainHookWanted(pod *corev1.Pod) (bool, error) {
	v, ok := pod.Annotations[AnnotationDrainHook]
	if !ok {
		return true, nil
	}
	return parseBool(AnnotationDrainHook, v)
}

// OwnPreStop names the app containers that keep a preStop hook of their
// own, and so get no drain hook: the webhook logs them and warns the user
// (a container that is sent SIGTERM before the drain ends may miss the
// SHUTDOWN events of its last streams). Empty when the pod opted out.
func OwnPreStop(pod *corev1.Pod) []string {
	if want, err := drainHookWanted(pod); err != nil || !want {
		return nil
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			names = append(names, c.Name)
		}
	}
	return names
}

// drainHooks returns the operations that give every app container without
// a preStop of its own the drain hook, given the pod's original container
// list (apply them before the sidecar is inserted among the containers),
// and whether any was added. The hook is an httpGet, run by the kubelet
// against the pod's IP: the app's image needs nothing for it.
func drainHooks(pod *corev1.Pod, cfg Config, token string) ([]Operation, error) {
	want, err := drainHookWanted(pod)
	if err != nil || !want || token == "" {
		return nil, err
	}
	hook := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: admin.DrainPath,
		// A number: the kubelet looks a named port up in the hook's own
		// container, which is the app's, not the sidecar's.
		Port:        intstr.FromInt32(cfg.AdminPort),
		HTTPHeaders: []corev1.HTTPHeader{{Name: admin.DrainTokenHeader, Value: token}},
	}}
	var ops []Operation
	for i, c := range pod.Spec.Containers {
		path := "/spec/containers/" + strconv.Itoa(i) + "/lifecycle"
		switch {
		case c.Lifecycle == nil:
			ops = append(ops, Operation{"add", path, &corev1.Lifecycle{PreStop: hook}})
		case c.Lifecycle.PreStop == nil:
			ops = append(ops, Operation{"add", path + "/preStop", hook})
		}
	}
	return ops, nil
}

// withDrainToken gives the sidecar the token the hooks carry.
func withDrainToken(c corev1.Container, token string) corev1.Container {
	c.Env = append(c.Env, corev1.EnvVar{Name: drainTokenEnv, Value: token})
	return c
}

// drainHookNote is the warning for the containers OwnPreStop names.
func drainHookNote(names []string) string {
	return fmt.Sprintf("hangup: containers %q have a preStop hook of their own, so they get no %s hook (%s): "+
		"the kubelet may stop them before the sidecar's drain has told them of their last streams", names, admin.DrainPath, AnnotationDrainHook)
}

// podName names a pod in a log line: a pod a controller creates has no
// name yet at admission, only its generateName prefix.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
