package mesh

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// TestMeshDocNamesRealThings keeps docs/mesh.md honest: every test it
// cites as proof exists under test/, every sidecar flag it names is one of
// the proxy's, and the ports it gives are the ones pkg/ports declares.
func TestMeshDocNamesRealThings(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mesh.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)

	var sources strings.Builder
	err = filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, rerr := os.ReadFile(path)
			sources.Write(b)
			return rerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := regexp.MustCompile(`\bTest[A-Z][A-Za-z]+`).FindAllString(text, -1)
	if len(tests) == 0 {
		t.Fatal("docs/mesh.md cites no test")
	}
	for _, name := range tests {
		if !strings.Contains(sources.String(), "func "+name+"(t *testing.T)") {
			t.Errorf("docs/mesh.md cites %s, which no test under test/ defines", name)
		}
	}

	proxy, err := os.ReadFile("../../cmd/sidecar/proxy.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`(--[a-z-]+)`").FindAllStringSubmatch(text, -1) {
		if !strings.Contains(string(proxy), `"`+strings.TrimPrefix(m[1], "--")+`"`) {
			t.Errorf("docs/mesh.md names the flag %s, which sidecar proxy does not have", m[1])
		}
	}

	for name, port := range map[string]int{"proxy": ports.Proxy, "admin": ports.Admin, "notify": ports.Notify} {
		if !strings.Contains(text, strconv.Itoa(port)) {
			t.Errorf("docs/mesh.md does not give the %s port %d", name, port)
		}
	}
}
