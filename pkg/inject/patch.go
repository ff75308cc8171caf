package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hangup-dev/hangup/pkg/redirect"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Operation is one RFC 6902 JSON patch operation, as admission/v1 expects in
// AdmissionResponse.Patch.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Request is what Patch decides on.
type Request struct {
	// Pod as submitted. Patch does not modify it.
	Pod *corev1.Pod
	// NamespaceLabels of the pod's namespace; LabelInject=enabled injects
	// pods that do not opt out.
	NamespaceLabels map[string]string
	// NativeSidecars says the API server supports init containers with
	// restartPolicy Always (Kubernetes 1.29 and later).
	NativeSidecars bool
	// DrainToken, from NewDrainToken, is what the app's preStop hook shows
	// the sidecar's /drain (drain.go). Empty: no hook.
	DrainToken string
}

// Patch returns the JSON patch that adds the sidecar to req.Pod, nil when the
// pod is not to be injected (not asked for, opted out, or already injected),
// or an *AnnotationError when an annotation's value is unusable and the pod
// must be denied. It is pure: no I/O, same input, same output.
func Patch(req Request, cfg Config) ([]Operation, error) {
	pod := req.Pod
	if pod == nil {
		return nil, fmt.Errorf("inject: no pod in request")
	}
	want, err := wanted(pod, req.NamespaceLabels)
	if err != nil || !want {
		return nil, err
	}
	s, err := podSettings(pod, cfg)
	if err != nil {
		return nil, err
	}

	hooks, err := drainHooks(pod, cfg, req.DrainToken)
	if err != nil {
		return nil, err
	}
	sidecar := sidecarContainer(s, cfg, req.NativeSidecars)
	if len(hooks) > 0 {
		sidecar = withDrainToken(sidecar, req.DrainToken)
	}
	var inits []corev1.Container
	if s.mode == ModeRedirect {
		inits = append(inits, redirectContainer(s, cfg))
	}
	if req.NativeSidecars {
		// Init containers start in order and a native sidecar must be up
		// before the app starts; after the redirect rules, before the rest.
		inits = append(inits, sidecar)
	}

	var ops []Operation
	if pod.Annotations == nil {
		ops = append(ops, Operation{"add", "/metadata/annotations", map[string]string{AnnotationInjected: "true"}})
	} else {
		ops = append(ops, Operation{"add", "/metadata/annotations/" + escape(AnnotationInjected), "true"})
	}
	ops = append(ops, prepend("/spec/initContainers", len(pod.Spec.InitContainers), inits)...)
	// Before the sidecar is inserted: the hooks use the original indices.
	ops = append(ops, hooks...)
	if !req.NativeSidecars {
		// Placed first so that it is started first: the kubelet starts
		// regular containers in order.
		ops = append(ops, Operation{"add", "/spec/containers/0", sidecar})
	}
	if s.mode == ModeRedirect && cfg.RedirectBackend == string(redirect.BackendIPTables) {
		vol := corev1.Volume{Name: xtablesVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		if len(pod.Spec.Volumes) == 0 {
			ops = append(ops, Operation{"add", "/spec/volumes", []corev1.Volume{vol}})
		} else {
			ops = append(ops, Operation{"add", "/spec/volumes/-", vol})
		}
	}
	return ops, nil
}

// xtablesVolume gives iptables a writable /run for its lock file
// (/run/xtables.lock) under a read-only root file system.
const xtablesVolume = "hangup-xtables-lock"

// prepend adds items at the front of the list at path, which has n elements.
func prepend(path string, n int, items []corev1.Container) []Operation {
	if len(items) == 0 {
		return nil
	}
	if n == 0 {
		return []Operation{{"add", path, items}}
	}
	ops := make([]Operation, len(items))
	for i, c := range items {
		ops[i] = Operation{"add", path + "/" + strconv.Itoa(i), c}
	}
	return ops
}

// escape encodes a map key as a JSON pointer token (RFC 6901 section 3).
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// wanted says whether the pod asks for the sidecar.
func wanted(pod *corev1.Pod, nsLabels map[string]string) (bool, error) {
	if _, ok := pod.Annotations[AnnotationInjected]; ok {
		return false, nil
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == SidecarName {
				return false, nil
			}
		}
	}
	v, ok := pod.Annotations[AnnotationInject]
	if !ok {
		return nsLabels[LabelInject] == LabelInjectEnabled, nil
	}
	return parseBool(AnnotationInject, v)
}

// podSettings applies the pod's annotations over cfg.
func podSettings(pod *corev1.Pod, cfg Config) (settings, error) {
	s := settings{
		notifyAddr:       cfg.NotifyAddr,
		notifyHeaders:    cfg.NotifyHeaders,
		watchAddr:        cfg.WatchAddr,
		keepaliveTime:    cfg.KeepaliveTime,
		keepaliveTimeout: cfg.KeepaliveTimeout,
		mode:             cfg.Mode,
	}
	a := pod.Annotations
	var err error
	if v, ok := a[AnnotationNotifyAddr]; ok {
		if s.notifyAddr, err = parseNotifyAddr(AnnotationNotifyAddr, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationNotifyHeaders]; ok {
		if s.notifyHeaders, err = parseHeaders(AnnotationNotifyHeaders, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationKeepaliveTime]; ok {
		if s.keepaliveTime, err = parseKeepalive(AnnotationKeepaliveTime, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationKeepaliveTimeout]; ok {
		if s.keepaliveTimeout, err = parseKeepalive(AnnotationKeepaliveTimeout, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationMode]; ok {
		if s.mode, err = parseMode(AnnotationMode, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationWatchAddr]; ok {
		if s.watchAddr, err = parseWatchAddr(AnnotationWatchAddr, v); err != nil {
			return s, err
		}
	}
	if s.grace, err = parseGrace(a); err != nil {
		return s, err
	}
	if s.rtt, err = parseRTT(a, rttSettings{interval: cfg.RTTInterval, header: cfg.RTTHeader}); err != nil {
		return s, err
	}
	if s.appPort, err = appPort(pod, cfg); err != nil {
		return s, err
	}
	s.holdApplication = DefaultHoldApplication
	if v, ok := a[AnnotationHoldApplication]; ok {
		if s.holdApplication, err = parseBool(AnnotationHoldApplication, v); err != nil {
			return s, err
		}
	}
	s.ipv6 = redirect.IPv6Auto
	if v, ok := a[AnnotationIPv6]; ok {
		if s.ipv6, err = parseIPv6(AnnotationIPv6, v); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationExcludeInboundPorts]; ok {
		if s.excludePorts, err = parseExcludePorts(AnnotationExcludeInboundPorts, v, s.appPort); err != nil {
			return s, err
		}
	}
	if v, ok := a[AnnotationExcludeInboundCIDRs]; ok {
		if s.excludeCIDRs, err = parseExcludeCIDRs(AnnotationExcludeInboundCIDRs, v); err != nil {
			return s, err
		}
	}
	s.excludePorts = append(s.excludePorts, probePorts(pod, s.appPort)...)
	slices.Sort(s.excludePorts)
	s.excludePorts = slices.Compact(s.excludePorts)
	return s, nil
}

// probePorts returns the ports of the app containers' HTTP, TCP and gRPC
// probes, other than the app port, for redirect mode to leave alone. The
// kubelet probes from outside the pod: through the relay, a TCP probe
// would test the sidecar's accept, not the app. Probes on the app port
// itself go through the relay and work (gRPC probes are h2c, HTTP/1.1 is
// relayed as plain TCP); docs/mesh.md says what a TCP probe there means.
func probePorts(pod *corev1.Pod, app int32) []int {
	var out []int
	for _, c := range pod.Spec.Containers {
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr == nil {
				continue
			}
			var port int32
			switch h := pr.ProbeHandler; {
			case h.HTTPGet != nil:
				port = resolvePort(h.HTTPGet.Port, c)
			case h.TCPSocket != nil:
				port = resolvePort(h.TCPSocket.Port, c)
			case h.GRPC != nil:
				port = h.GRPC.Port
			}
			if port > 0 && port != app {
				out = append(out, int(port))
			}
		}
	}
	return out
}

// resolvePort returns a probe's port number, looking a named port up in
// the container's ports; 0 when it names none.
func resolvePort(p intstr.IntOrString, c corev1.Container) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// appPort reads the app-port annotation, or the pod's only container port.
func appPort(pod *corev1.Pod, cfg Config) (int32, error) {
	v, ok := pod.Annotations[AnnotationAppPort]
	if !ok {
		var ports []int32
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
					ports = append(ports, p.ContainerPort)
				}
			}
		}
		if len(ports) == 1 {
			return ports[0], nil
		}
		return 0, &AnnotationError{AnnotationAppPort, "", fmt.Sprintf(
			"the app's gRPC port: it is required because the pod declares %d TCP container ports, not exactly one", len(ports))}
	}
	p, err := parsePort(AnnotationAppPort, v)
	if err != nil {
		return 0, err
	}
	if p == cfg.ProxyPort || p == cfg.AdminPort {
		return 0, &AnnotationError{AnnotationAppPort, v, fmt.Sprintf(
			"the app's port, not one of the sidecar's ports %d and %d", cfg.ProxyPort, cfg.AdminPort)}
	}
	return p, nil
}

func sidecarContainer(s settings, cfg Config, native bool) corev1.Container {
	args := []string{
		"proxy",
		fmt.Sprintf("--listen=:%d", cfg.ProxyPort),
	}
	if s.mode == ModePort {
		// In redirect mode the sidecar takes the upstream from
		// SO_ORIGINAL_DST of each connection.
		args = append(args, fmt.Sprintf("--upstream=127.0.0.1:%d", s.appPort))
	}
	args = append(args,
		fmt.Sprintf("--admin=:%d", cfg.AdminPort),
		"--notify-addr="+s.notifyAddr,
	)
	if len(s.notifyHeaders) > 0 {
		args = append(args, "--notify-headers="+strings.Join(s.notifyHeaders, ","))
	}
	args = append(args,
		"--keepalive-time="+s.keepaliveTime.String(),
		"--keepalive-timeout="+s.keepaliveTimeout.String(),
		"--mode="+string(s.mode),
	)
	args = append(args, watchArgs(s.watchAddr)...)
	args = append(args, s.grace.args()...)
	args = append(args, s.rtt.args()...)

	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_IP", "status.podIP"),
		// $(VAR) references are expanded by the kubelet from the variables
		// defined above it.
		{Name: "OTEL_RESOURCE_ATTRIBUTES", Value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.ip=$(POD_IP)"},
		{Name: "OTEL_SERVICE_NAME", Value: SidecarName},
	}
	if cfg.OTLPEndpoint != "" {
		env = append(env, corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: cfg.OTLPEndpoint})
	}
	if _, limited := cfg.Resources.Limits[corev1.ResourceCPU]; !limited {
		env = append(env, corev1.EnvVar{Name: "GOMAXPROCS", Value: SidecarGOMAXPROCS})
	}

	c := corev1.Container{
		Name:            SidecarName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{cfg.BinaryPath},
		Args:            args,
		Ports: []corev1.ContainerPort{
			{Name: "hangup-proxy", ContainerPort: cfg.ProxyPort, Protocol: corev1.ProtocolTCP},
			{Name: "hangup-admin", ContainerPort: cfg.AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Env:       env,
		Resources: cfg.Resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(cfg.UID),
			RunAsGroup:               ptr.To(cfg.UID),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		ReadinessProbe: httpProbe("/readyz", cfg.AdminPort, 5, 3),
		LivenessProbe:  httpProbe("/healthz", cfg.AdminPort, 10, 3),
	}
	if !native && s.holdApplication {
		// The kubelet runs a container's postStart hook before it starts
		// the next container: the app waits for a healthy sidecar.
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{cfg.BinaryPath, "wait", fmt.Sprintf("--admin=:%d", cfg.AdminPort), "--timeout=" + HoldTimeout.String()},
		}}}
	}
	if native {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		// The kubelet starts the next container only once the startup
		// probe passes: the app never starts before its proxy listens.
		c.StartupProbe = httpProbe("/healthz", cfg.AdminPort, 1, 30)
	}
	return c
}

func redirectContainer(s settings, cfg Config) corev1.Container {
	caps := []corev1.Capability{"NET_ADMIN"}
	var mounts []corev1.VolumeMount
	if cfg.RedirectBackend == string(redirect.BackendIPTables) {
		// iptables talks to the kernel through a raw socket.
		caps = append(caps, "NET_RAW")
		mounts = []corev1.VolumeMount{{Name: xtablesVolume, MountPath: "/run"}}
	}
	image := cfg.InitImage
	if image == "" {
		image = cfg.Image
	}
	return corev1.Container{
		Name:            InitRedirectName,
		Image:           image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{cfg.BinaryPath},
		Args:            redirectArgs(s, cfg),
		Resources:       cfg.Resources,
		VolumeMounts:    mounts,
		SecurityContext: &corev1.SecurityContext{
			// Added capabilities are effective only for uid 0 (Kubernetes
			// sets no ambient capabilities), so this one runs as root with
			// nothing but the network capabilities it needs.
			RunAsNonRoot:             ptr.To(false),
			RunAsUser:                ptr.To(int64(0)),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func redirectArgs(s settings, cfg Config) []string {
	args := []string{
		"init-redirect",
		fmt.Sprintf("--app-port=%d", s.appPort),
		fmt.Sprintf("--proxy-port=%d", cfg.ProxyPort),
		fmt.Sprintf("--admin-port=%d", cfg.AdminPort),
		"--backend=" + cfg.RedirectBackend,
		"--ipv6=" + string(s.ipv6),
	}
	if len(s.excludePorts) > 0 {
		ports := make([]string, len(s.excludePorts))
		for i, p := range s.excludePorts {
			ports[i] = strconv.Itoa(p)
		}
		args = append(args, "--exclude-ports="+strings.Join(ports, ","))
	}
	if len(s.excludeCIDRs) > 0 {
		args = append(args, "--exclude-cidrs="+strings.Join(s.excludeCIDRs, ","))
	}
	return args
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: path},
	}}
}

func httpProbe(path string, port, periodSeconds, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(port),
		}},
		PeriodSeconds:    periodSeconds,
		FailureThreshold: failures,
	}
}
