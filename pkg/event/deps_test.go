package event_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPurePackagesImportNoRPC keeps the event model and the keepalive policy
// leaves: they are used on the data path and in pure state machines, and
// must not drag gRPC or protobuf (131 packages once) into whatever imports
// them.
func TestPurePackagesImportNoRPC(t *testing.T) {
	tests := []struct {
		name    string
		pkg     string
		allowed []string // non-standard packages it may import
	}{
		{name: "event", pkg: "github.com/hangup-dev/hangup/pkg/event"},
		{name: "keepalive", pkg: "github.com/hangup-dev/hangup/pkg/keepalive",
			allowed: []string{"github.com/hangup-dev/hangup/pkg/event"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", tt.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tt.pkg, err, out)
			}
			allowed := map[string]bool{tt.pkg: true}
			for _, a := range tt.allowed {
				allowed[a] = true
			}
			var extra []string
			seen := 0
			for _, p := range strings.Fields(string(out)) {
				seen++
				if !allowed[p] {
					extra = append(extra, p)
				}
			}
			if seen == 0 {
				t.Fatalf("go list -deps %s listed nothing; want at least the package itself", tt.pkg)
			}
			if len(extra) > 0 {
				t.Errorf("%s imports %d non-standard packages it must not: %s", tt.pkg, len(extra), strings.Join(extra, ", "))
			}
		})
	}
}
