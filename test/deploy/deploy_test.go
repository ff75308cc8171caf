// Package deploy_test keeps the deployment artefacts in step with the code:
// the chart's values with the injector's defaults and its README, the
// Dockerfile with the chart, the rendered manifests with the chart.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/hangup-dev/hangup/pkg/inject"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the chart README's values table and deploy/manifests/hangup.yaml")

const (
	// kubeVersion is what helm assumes for the chart's kubeVersion check
	// (as scripts/render-manifests.sh passes it).
	kubeVersion = "v1.37.2"
	chartDir    = "../../deploy/helm/hangup"
	manifests   = "../../deploy/manifests/hangup.yaml"
)

// tool returns a pinned tool from the hangup cache, or fails the test
// saying how to get it.
func tool(t *testing.T, name string) string {
	t.Helper()
	cache := os.Getenv("HANGUP_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "hangup")
	}
	p := filepath.Join(cache, "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found at %s: run scripts/install-tools.sh kube-apiserver etcd kubectl helm", name, p)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func readValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	return v
}

func lookup(v map[string]any, path string) any {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// documentedValue is one `# --` documented key of values.yaml.
type documentedValue struct {
	Path, Description string
}

var keyLine = regexp.MustCompile(`^(\s*)([A-Za-z0-9_]+):(.*)$`)

// parseDocumented reads values.yaml line by line: a "# --" comment (and the
// comment lines after it) documents the next key; the subtree of a
// documented key is its default. A leaf that is neither documented nor
// under a documented key is an error.
func parseDocumented(t *testing.T) []documentedValue {
	t.Helper()
	f, err := os.Open(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type frame struct {
		indent int
		key    string
		doc    bool
	}
	var stack []frame
	var out []documentedValue
	var desc []string
	collecting := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trim, "# --"):
			desc, collecting = []string{strings.TrimSpace(strings.TrimPrefix(trim, "# --"))}, true
			continue
		case strings.HasPrefix(trim, "#"):
			if collecting {
				desc = append(desc, strings.TrimSpace(strings.TrimPrefix(trim, "#")))
			}
			continue
		case trim == "" || strings.HasPrefix(trim, "-"):
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1])
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		underDoc := slices.ContainsFunc(stack, func(f frame) bool { return f.doc })
		var path []string
		for _, f := range stack {
			path = append(path, f.key)
		}
		path = append(path, m[2])
		documented := collecting
		if documented && !underDoc {
			out = append(out, documentedValue{strings.Join(path, "."), strings.Join(desc, " ")})
		}
		leaf := strings.TrimSpace(m[3]) != ""
		if leaf && !documented && !underDoc {
			t.Errorf("values.yaml:%d: %s has no \"# --\" comment", n, strings.Join(path, "."))
		}
		stack = append(stack, frame{indent, m[2], documented || underDoc})
		desc, collecting = nil, false
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// valuesTable renders the README's table of values.
func valuesTable(t *testing.T) string {
	t.Helper()
	values := readValues(t)
	var b strings.Builder
	b.WriteString("| Key | Default | Description |\n| --- | --- | --- |\n")
	for _, d := range parseDocumented(t) {
		def, err := json.Marshal(lookup(values, d.Path))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", d.Path, def, strings.ReplaceAll(d.Description, "|", `\|`))
	}
	return b.String()
}

const (
	tableBegin = "<!-- values:begin (generated by go test ./test/deploy -run TestChartREADME -update) -->\n"
	tableEnd   = "<!-- values:end -->"
)

// TestChartREADME checks that every value is documented and that the
// README's table is the one generated from values.yaml.
func TestChartREADME(t *testing.T) {
	path := filepath.Join(chartDir, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q", path, tableBegin, tableEnd)
	}
	table := valuesTable(t)
	got := s[:i+len(tableBegin)] + table + s[j:]
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != s {
		t.Errorf("%s's values table is stale: go test ./test/deploy -run TestChartREADME -update", path)
	}
	for _, d := range parseDocumented(t) {
		if !strings.Contains(s, "`"+d.Path+"`") {
			t.Errorf("README lacks value %s", d.Path)
		}
	}
}

// TestValuesMatchInjectorDefaults keeps values.yaml and inject.DefaultConfig
// in step, so that the chart and a webhook run without a config file agree.
func TestValuesMatchInjectorDefaults(t *testing.T) {
	v := readValues(t)
	d := inject.DefaultConfig("")
	tests := []struct {
		path string
		want any
	}{
		{"uid", float64(d.UID)},
		{"binaryPath", d.BinaryPath},
		{"image.pullPolicy", string(d.ImagePullPolicy)},
		{"webhook.port", float64(inject.DefaultWebhookPort)},
		{"sidecar.proxyPort", float64(d.ProxyPort)},
		{"sidecar.adminPort", float64(d.AdminPort)},
		{"sidecar.notifyAddr", d.NotifyAddr},
		{"sidecar.keepaliveTime", d.KeepaliveTime.String()},
		{"sidecar.keepaliveTimeout", d.KeepaliveTimeout.String()},
		{"sidecar.mode", string(d.Mode)},
		{"sidecar.redirectBackend", d.RedirectBackend},
		{"sidecar.resources.requests.cpu", d.Resources.Requests.Cpu().String()},
		{"sidecar.resources.requests.memory", d.Resources.Requests.Memory().String()},
		{"sidecar.resources.limits.memory", d.Resources.Limits.Memory().String()},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := lookup(v, tc.path); got != tc.want {
				t.Errorf("values.yaml %s = %v, injector default %v", tc.path, got, tc.want)
			}
		})
	}
}

// dockerfile holds what TestDockerfile checks in the final stage.
type dockerfile struct {
	finalFrom  string
	user       string
	expose     []string
	entrypoint []string
	copyDest   string
	buildCmd   string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	var stage int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		arg := strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		switch strings.ToUpper(f[0]) {
		case "FROM":
			stage++
			d = dockerfile{buildCmd: d.buildCmd, finalFrom: f[1]}
		case "RUN":
			if strings.Contains(arg, "go build") {
				d.buildCmd = arg
			}
		case "USER":
			d.user = arg
		case "EXPOSE":
			d.expose = f[1:]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(arg), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: want exec form: %v", arg, err)
			}
		case "COPY":
			if strings.Contains(arg, "--from=") {
				d.copyDest = f[len(f)-1]
			}
		}
	}
	if stage < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", stage)
	}
	return d
}

// TestDockerfile checks that the image and the chart agree on the binary,
// the user and the ports.
func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t)
	v := readValues(t)
	uid := strconv.Itoa(int(lookup(v, "uid").(float64)))
	bin := lookup(v, "binaryPath").(string)

	if !strings.Contains(d.finalFrom, "distroless/static") && d.finalFrom != "scratch" {
		t.Errorf("final image %s: want distroless static or scratch", d.finalFrom)
	}
	if !strings.Contains(d.buildCmd, "CGO_ENABLED=0") || !strings.Contains(d.buildCmd, "./cmd/sidecar") {
		t.Errorf("build %q: want a CGO_ENABLED=0 build of ./cmd/sidecar", d.buildCmd)
	}
	if u, _, _ := strings.Cut(d.user, ":"); u != uid || u != strconv.FormatInt(inject.DefaultUID, 10) {
		t.Errorf("USER %s: want the chart's uid %s and the injector's %d", d.user, uid, inject.DefaultUID)
	}
	if len(d.entrypoint) != 1 || d.entrypoint[0] != bin || bin != inject.DefaultBinaryPath {
		t.Errorf("ENTRYPOINT %v: want [%s] (values binaryPath %s)", d.entrypoint, inject.DefaultBinaryPath, bin)
	}
	if d.copyDest != bin {
		t.Errorf("binary copied to %s, want %s", d.copyDest, bin)
	}
	for _, p := range []string{"sidecar.proxyPort", "sidecar.adminPort", "webhook.port"} {
		port := strconv.Itoa(int(lookup(v, p).(float64)))
		if !slices.Contains(d.expose, port) {
			t.Errorf("EXPOSE %v lacks %s (%s)", d.expose, port, p)
		}
	}
}

// helmTemplate renders the chart with extra --set arguments.
func helmTemplate(t *testing.T, set ...string) []byte {
	t.Helper()
	args := []string{"template", "hangup", chartDir, "--namespace", "hangup", "--kube-version", kubeVersion}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return run(t, tool(t, "helm"), args...)
}

func TestHelmLint(t *testing.T) {
	helm := tool(t, "helm")
	run(t, helm, "lint", "--strict", "--kube-version", kubeVersion, chartDir)
	run(t, helm, "lint", "--strict", "--kube-version", kubeVersion, chartDir, "--set", "certManager.enabled=true,sidecar.mode=redirect,webhook.failurePolicy=Fail")
}

func TestHelmSchemaRejectsBadValues(t *testing.T) {
	helm := tool(t, "helm")
	tests := []struct{ name, set, want string }{
		{"unknown mode", "sidecar.mode=transparent", "mode"},
		{"bad failure policy", "webhook.failurePolicy=Sometimes", "failurePolicy"},
		{"timeout too long", "webhook.timeoutSeconds=60", "timeoutSeconds"},
		{"bad duration", "sidecar.keepaliveTime=abc", "keepaliveTime"},
		{"unknown key", "sidecar.keepalive=30s", "keepalive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, helm, "template", "hangup", chartDir, "--kube-version", kubeVersion, "--set", tc.set).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("helm template --set %s: err %v, output %s; want a schema error naming %s", tc.set, err, out, tc.want)
			}
		})
	}
}

// TestRenderedManifests fails when deploy/manifests/hangup.yaml differs from
// a fresh render; -update rewrites it.
func TestRenderedManifests(t *testing.T) {
	tool(t, "helm")
	out := filepath.Join(t.TempDir(), "hangup.yaml")
	if *update {
		out = manifests
	}
	run(t, "../../scripts/render-manifests.sh", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(manifests)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run scripts/render-manifests.sh (or go test ./test/deploy -run TestRenderedManifests -update)", manifests)
	}
}

// splitDocs decodes a multi-document YAML stream into kind → documents.
func splitDocs(t *testing.T, b []byte) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered document: %v\n%s", err, doc)
		}
		if meta.Kind != "" {
			out[meta.Kind] = append(out[meta.Kind], []byte(doc))
		}
	}
	return out
}

// TestChartWebhookArgs parses the rendered webhook arguments with the
// injector's own flag set and loads the rendered sidecar config with its
// own loader, in both certificate modes.
func TestChartWebhookArgs(t *testing.T) {
	tests := []struct {
		name        string
		set         []string
		selfManaged bool
	}{
		{"self-managed CA", nil, true},
		{"cert-manager", []string{"certManager.enabled=true"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs := splitDocs(t, helmTemplate(t, tc.set...))
			var dep appsv1.Deployment
			if err := yaml.UnmarshalStrict(docs["Deployment"][0], &dep); err != nil {
				t.Fatal(err)
			}
			if *dep.Spec.Replicas != 2 {
				t.Errorf("replicas %d, want 2", *dep.Spec.Replicas)
			}
			if dep.Spec.Template.Spec.Affinity == nil || dep.Spec.Template.Spec.Affinity.PodAntiAffinity == nil {
				t.Error("no pod anti-affinity")
			}
			c := dep.Spec.Template.Spec.Containers[0]
			if c.Args[0] != "inject" || c.Command[0] != inject.DefaultBinaryPath {
				t.Fatalf("webhook runs %v %v", c.Command, c.Args)
			}
			var cfg inject.ServerConfig
			fs := flag.NewFlagSet("inject", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(c.Args[1:]); err != nil {
				t.Fatalf("chart passes flags the injector does not know: %v", err)
			}
			if got := cfg.CertDir == ""; got != tc.selfManaged {
				t.Errorf("cert dir %q, self-managed %v", cfg.CertDir, tc.selfManaged)
			}
			if tc.selfManaged {
				if cfg.WebhookConfigName != "hangup-hangup" || !slices.Contains(cfg.Hosts, "hangup-inject.hangup.svc") {
					t.Errorf("webhook config %q, hosts %v", cfg.WebhookConfigName, cfg.Hosts)
				}
			}

			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(docs["ConfigMap"][0], &cm); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "sidecar.yaml")
			if err := os.WriteFile(file, []byte(cm.Data["sidecar.yaml"]), 0o644); err != nil {
				t.Fatal(err)
			}
			sc, err := inject.LoadConfig(file)
			if err != nil {
				t.Fatalf("rendered sidecar config: %v", err)
			}
			want := inject.DefaultConfig("hangup-dev/hangup:0.1.0")
			wantJSON, _ := json.Marshal(want)
			gotJSON, _ := json.Marshal(sc)
			if !bytes.Equal(wantJSON, gotJSON) {
				t.Errorf("rendered sidecar config\n%s\nwant the injector defaults\n%s", gotJSON, wantJSON)
			}
			if cfg.SidecarConfigFile != c.VolumeMounts[0].MountPath {
				t.Errorf("--config=%s but the ConfigMap is mounted at %s", cfg.SidecarConfigFile, c.VolumeMounts[0].MountPath)
			}
		})
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
