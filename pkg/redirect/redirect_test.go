package redirect

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden rule files in testdata")

func TestRulesGolden(t *testing.T) {
	tests := []struct {
		name      string
		backend   Backend
		app, prox int
	}{
		{"iptables-8080-16006", BackendIPTables, 8080, 16006},
		{"iptables-1-65535", BackendIPTables, 1, 65535},
		{"nft-8080-16006", BackendNFT, 8080, 16006},
		{"nft-9090-15001", BackendNFT, 9090, 15001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rules(tc.backend, tc.app, tc.prox)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".rules", got)
		})
	}
	for _, b := range []Backend{BackendIPTables, BackendNFT} {
		t.Run("remove-"+string(b), func(t *testing.T) {
			got, err := RemoveRules(b)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "remove-"+string(b)+".rules", got)
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (go test -update writes it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestRulesRejectBadInput(t *testing.T) {
	tests := []struct {
		name      string
		backend   Backend
		app, prox int
		want      string
	}{
		{"unknown backend", "pf", 8080, 16006, `backend "pf": want iptables or nft`},
		{"app port zero", BackendIPTables, 0, 16006, "app port 0: want 1 to 65535"},
		{"app port too big", BackendNFT, 65536, 16006, "app port 65536: want 1 to 65535"},
		{"proxy port negative", BackendIPTables, 8080, -1, "proxy port -1: want 1 to 65535"},
		{"same ports", BackendIPTables, 16006, 16006, "app port 16006 equals the proxy port: want different ports"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Rules(tc.backend, tc.app, tc.prox)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := RemoveRules("pf"); err == nil {
		t.Error("RemoveRules accepted an unknown backend")
	}
}

// fakeTools puts scripts named like the real tools first in PATH; each
// appends its arguments and stdin to a log, and fails when asked to delete
// (as the real one does on a first run, where there is nothing to delete).
func fakeTools(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	for _, n := range names {
		// Builtins only: PATH holds nothing but the fakes.
		script := fmt.Sprintf(`#!/bin/sh
echo "== %s $*" >> %s
fail=0
while IFS= read -r line; do
	echo "$line" >> %s
	case "$line" in "-D PREROUTING"*) fail=1;; esac
done
if [ $fail = 1 ]; then echo 'iptables-restore: line 2 failed' >&2; exit 1; fi
`, n, log, log)
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	return log
}

func TestRunExecutesBackend(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		tools []string
		want  []string
	}{
		{
			name: "iptables v4", cfg: Config{AppPort: 8080}, tools: []string{"iptables-restore"},
			want: []string{"== iptables-restore -w 5 --noflush", "-D PREROUTING", "--dport 8080 -j REDIRECT --to-ports 16006"},
		},
		{
			name: "iptables v4 and v6", cfg: Config{AppPort: 8080, IPv6: true}, tools: []string{"iptables-restore", "ip6tables-restore"},
			want: []string{"== ip6tables-restore -w 5 --noflush", "--dport 8080"},
		},
		{
			name: "nft", cfg: Config{AppPort: 9090, ProxyPort: 15001, Backend: BackendNFT}, tools: []string{"nft"},
			want: []string{"== nft -f -", "tcp dport 9090 redirect to :15001"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := fakeTools(t, tc.tools...)
			if err := Run(context.Background(), tc.cfg); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("calls do not contain %q:\n%s", w, b)
				}
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	t.Run("tool missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := Run(context.Background(), Config{AppPort: 8080, Backend: BackendNFT})
		if err == nil || !strings.Contains(err.Error(), "nft not found") {
			t.Errorf("got %v, want an error naming nft", err)
		}
	})
	t.Run("tool fails", func(t *testing.T) {
		fakeTools(t, "iptables-restore")
		err := Remove(context.Background(), Config{AppPort: 8080})
		if err == nil || !strings.Contains(err.Error(), "line 2 failed") {
			t.Errorf("got %v, want the tool's output in the error", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		err := Run(context.Background(), Config{AppPort: 16006})
		if err == nil || !strings.Contains(err.Error(), "equals the proxy port") {
			t.Errorf("got %v", err)
		}
	})
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
