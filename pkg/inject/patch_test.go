package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangup-dev/hangup/pkg/redirect"
	"github.com/spf13/pflag"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixture is one testdata/*.yaml file.
type fixture struct {
	Native          bool              `json:"native"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	OTLPEndpoint    string            `json:"otlpEndpoint"`
	RedirectBackend string            `json:"redirectBackend"`
	Pod             corev1.Pod        `json:"pod"`
}

// golden is the expected outcome of a fixture: a patch (null when the pod is
// left alone) or the denial message.
type golden struct {
	Patch  []Operation `json:"patch"`
	Denied string      `json:"denied,omitempty"`
}

const testImage = "hangup-dev/hangup:0.1.0"

// testDrainToken stands for the token the webhook makes for each pod.
const testDrainToken = "test-drain-token"

func TestPatchGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			fx := readFixture(t, file)
			cfg := DefaultConfig(testImage)
			cfg.OTLPEndpoint = fx.OTLPEndpoint
			if fx.RedirectBackend != "" {
				cfg.RedirectBackend = fx.RedirectBackend
			}
			ops, err := Patch(Request{Pod: &fx.Pod, NamespaceLabels: fx.NamespaceLabels, NativeSidecars: fx.Native, DrainToken: testDrainToken}, cfg)
			var got golden
			if err != nil {
				var ae *AnnotationError
				if !errors.As(err, &ae) {
					t.Fatalf("Patch error is %T, want *AnnotationError: %v", err, err)
				}
				got.Denied = err.Error()
			}
			got.Patch = ops
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			goldenFile := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(goldenFile, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenFile)
			if err != nil {
				t.Fatalf("read golden (run go test -update to create it): %v", err)
			}
			if !bytes.Equal(gotJSON, want) {
				t.Errorf("patch differs from %s (go test -update rewrites it):\ngot:\n%s", goldenFile, gotJSON)
			}
			if strings.HasPrefix(name, "bad-") || strings.HasPrefix(name, "missing-") {
				if got.Denied == "" {
					t.Errorf("fixture %s must be denied", name)
				}
				return
			}
			if got.Denied != "" {
				t.Fatalf("fixture %s denied: %s", name, got.Denied)
			}
			checkApplied(t, fx, got.Patch)
		})
	}
}

func readFixture(t *testing.T, file string) fixture {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	if err := yaml.UnmarshalStrict(b, &fx); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return fx
}

// checkApplied applies ops to the fixture's pod the way the API server does
// and checks that the result is a well-formed pod with the sidecar where it
// belongs and every original container kept in order.
func checkApplied(t *testing.T, fx fixture, ops []Operation) {
	t.Helper()
	in := fx.Pod
	if ops == nil {
		return
	}
	podJSON, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	outJSON, err := p.Apply(podJSON)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	var out corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(outJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("patched pod does not decode as a Pod: %v", err)
	}
	if err := validPod(&out); err != nil {
		t.Errorf("patched pod is invalid: %v", err)
	}
	if out.Annotations[AnnotationInjected] != "true" {
		t.Errorf("patched pod lacks annotation %s", AnnotationInjected)
	}
	sidecarList := out.Spec.Containers
	if fx.Native {
		sidecarList = out.Spec.InitContainers
	}
	idx := indexOf(sidecarList, SidecarName)
	if idx < 0 {
		t.Fatalf("sidecar not in the expected list (native=%v)", fx.Native)
	}
	sc := sidecarList[idx]
	if fx.Native && (sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways || sc.StartupProbe == nil) {
		t.Errorf("native sidecar needs restartPolicy Always and a startup probe: %+v", sc)
	}
	if !fx.Native && (idx != 0 || sc.RestartPolicy != nil) {
		t.Errorf("regular sidecar must be the first container without restartPolicy, at %d", idx)
	}
	if ir := indexOf(out.Spec.InitContainers, InitRedirectName); ir >= 0 {
		if ir != 0 {
			t.Errorf("init-redirect at init index %d, want 0", ir)
		}
	}
	// The original containers are all still there, in order, unchanged.
	for _, pair := range [][2][]corev1.Container{{in.Spec.InitContainers, out.Spec.InitContainers}, {in.Spec.Containers, out.Spec.Containers}} {
		var kept []string
		for _, c := range pair[1] {
			if c.Name != SidecarName && c.Name != InitRedirectName {
				kept = append(kept, c.Name)
			}
		}
		var orig []string
		for _, c := range pair[0] {
			orig = append(orig, c.Name)
		}
		if strings.Join(kept, ",") != strings.Join(orig, ",") {
			t.Errorf("containers %v became %v", orig, kept)
		}
	}
	checkDrainHooks(t, &in, &out, &sc)
	sec := sc.SecurityContext
	if sec == nil || !*sec.RunAsNonRoot || *sec.RunAsUser == 0 || !*sec.ReadOnlyRootFilesystem ||
		*sec.AllowPrivilegeEscalation || len(sec.Capabilities.Drop) != 1 || sec.Capabilities.Drop[0] != "ALL" {
		t.Errorf("sidecar security context is not locked down: %+v", sec)
	}
}

func indexOf(list []corev1.Container, name string) int {
	for i, c := range list {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// validPod checks the rules of the API server's pod validation that a patch
// can break: unique container names and ports, mounts of existing volumes,
// restartPolicy only on init containers.
func validPod(p *corev1.Pod) error {
	if len(p.Spec.Containers) == 0 {
		return errors.New("no containers")
	}
	names := map[string]bool{}
	ports := map[int32]bool{}
	vols := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		if vols[v.Name] {
			return errors.New("duplicate volume " + v.Name)
		}
		vols[v.Name] = true
	}
	for i, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name == "" || c.Image == "" {
				return errors.New("container without name or image")
			}
			if names[c.Name] {
				return errors.New("duplicate container name " + c.Name)
			}
			names[c.Name] = true
			if i == 1 && c.RestartPolicy != nil {
				return errors.New("restartPolicy on regular container " + c.Name)
			}
			for _, port := range c.Ports {
				if ports[port.ContainerPort] {
					return errors.New("duplicate container port in " + c.Name)
				}
				ports[port.ContainerPort] = true
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					return errors.New("mount of missing volume " + m.Name)
				}
			}
		}
	}
	return nil
}

func TestPatchDoesNotModifyInput(t *testing.T) {
	fx := readFixture(t, "testdata/regular-redirect.yaml")
	before, _ := json.Marshal(fx.Pod)
	if _, err := Patch(Request{Pod: &fx.Pod}, DefaultConfig(testImage)); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(fx.Pod)
	if !bytes.Equal(before, after) {
		t.Error("Patch modified its input pod")
	}
}

func TestAnnotationErrorMessage(t *testing.T) {
	_, err := parseKeepalive(AnnotationKeepaliveTime, "abc")
	want := `annotation hangup.dev/keepalive-time="abc": want a Go duration of at least 1s such as 30s`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestInitRedirectArgsParse parses the injected init container's arguments
// with init-redirect's own flag set and validates the result, so the two
// packages cannot drift.
func TestInitRedirectArgsParse(t *testing.T) {
	for _, backend := range []redirect.Backend{redirect.BackendAuto, redirect.BackendNFTables, redirect.BackendIPTables} {
		t.Run(string(backend), func(t *testing.T) {
			cfg := DefaultConfig(testImage)
			cfg.RedirectBackend = string(backend)
			s := settings{appPort: 9090, mode: ModeRedirect, ipv6: redirect.IPv6On,
				excludePorts: []int{8081, 9100}, excludeCIDRs: []string{"192.0.2.0/24", "2001:db8::/32"}}
			c := redirectContainer(s, cfg)
			if c.Args[0] != "init-redirect" {
				t.Fatalf("args %v", c.Args)
			}
			var rc redirect.Config
			fs := pflag.NewFlagSet("init-redirect", pflag.ContinueOnError)
			rc.RegisterFlags(fs)
			if err := fs.Parse(c.Args[1:]); err != nil {
				t.Fatalf("init-redirect rejects the injected args: %v", err)
			}
			got := fmt.Sprintf("%d %d %d %s %s %v %v", rc.AppPort, rc.ProxyPort, rc.AdminPort, rc.Backend, rc.IPv6, rc.ExcludePorts, rc.ExcludeCIDRs)
			want := fmt.Sprintf("9090 %d %d %s true [8081 9100] [192.0.2.0/24 2001:db8::/32]", cfg.ProxyPort, cfg.AdminPort, backend)
			if got != want {
				t.Errorf("parsed %s, want %s", got, want)
			}
			if err := rc.Validate(); err != nil {
				t.Errorf("init-redirect rejects the injected config: %v", err)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // error substring; empty: success
	}{
		{name: "minimal", yaml: "image: hangup-dev/hangup:0.1.0\n"},
		{name: "full", yaml: "image: x:1\nkeepaliveTime: 1m\nkeepaliveTimeout: 2s\nmode: redirect\nredirectBackend: nftables\nnotifyHeaders: [x-a]\nuid: 1000\n"},
		{name: "unknown key", yaml: "image: x:1\nkeepalive: 1s\n", want: `unknown field "keepalive"`},
		{name: "bad duration", yaml: "image: x:1\nkeepaliveTime: soon\n", want: `keepaliveTime "soon": want a Go duration`},
		{name: "short timeout", yaml: "image: x:1\nkeepaliveTimeout: 10ms\n", want: "keepaliveTimeout"},
		{name: "bad header", yaml: "image: x:1\nnotifyHeaders: [X-A]\n", want: `notifyHeaders entry "X-A"`},
		{name: "watch address", yaml: "image: x:1\nwatchAddr: 127.0.0.1:15092\n"},
		{name: "bad watch address", yaml: "image: x:1\nwatchAddr: unix:///tmp/w.sock\n", want: `watchAddr "unix:///tmp/w.sock": want host:port`},
		{name: "no image", yaml: "mode: port\n", want: "sidecar image"},
		{name: "root", yaml: "image: x:1\nuid: 0\n", want: "non-root"},
		{name: "bad mode", yaml: "image: x:1\nmode: tproxy\n", want: `mode "tproxy"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sidecar.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if tc.want == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestSidecarGOMAXPROCS: a sidecar without a CPU limit gets GOMAXPROCS, so
// that its idle memory does not grow with the node's cores; with a limit
// the Go runtime sizes GOMAXPROCS from it, and the injector stays out.
func TestSidecarGOMAXPROCS(t *testing.T) {
	fx := readFixture(t, "testdata/regular-port.yaml")
	for _, tc := range []struct {
		name   string
		limits corev1.ResourceList
		want   string // GOMAXPROCS's value; "" for none
	}{
		{"no limits", nil, SidecarGOMAXPROCS},
		{"a memory limit only", corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}, SidecarGOMAXPROCS},
		{"a CPU limit", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(testImage)
			cfg.Resources.Limits = tc.limits
			ops, err := Patch(Request{Pod: fx.Pod.DeepCopy()}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, found := "", false
			for _, op := range ops {
				c, ok := op.Value.(corev1.Container)
				if !ok || c.Name != SidecarName {
					continue
				}
				found = true
				for _, e := range c.Env {
					if e.Name == "GOMAXPROCS" {
						got = e.Value
					}
				}
			}
			if !found {
				t.Fatalf("no %s container in the patch %+v", SidecarName, ops)
			}
			if got != tc.want {
				t.Errorf("GOMAXPROCS %q, want %q", got, tc.want)
			}
		})
	}
}
