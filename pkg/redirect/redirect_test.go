package redirect

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite the golden rule files in testdata")

func mustCIDRs(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPTablesRulesGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ipv6 bool
	}{
		{"defaults-8080", Config{AppPort: 8080}, false},
		{"excluded", Config{AppPort: 8080, ExcludePorts: []int{9090, 8081, 9090}, ExcludeCIDRs: mustCIDRs(t, "192.0.2.7/24,2001:db8::/32,::ffff:198.51.100.0/120")}, true},
		{"other-ports", Config{AppPort: 9090, ProxyPort: 15001, AdminPort: 15002}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			p := newPlan(c, tc.ipv6)
			got := iptablesRules(p, false)
			if tc.ipv6 {
				got += "# ip6tables-restore\n" + iptablesRules(p, true)
			}
			golden(t, "iptables-"+tc.name+".rules", got)
		})
	}
	t.Run("remove", func(t *testing.T) {
		golden(t, "remove-iptables.rules", iptablesRemoveJump+"# then\n"+iptablesRemoveChain)
	})
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

func TestPlan(t *testing.T) {
	c, err := Config{AppPort: 8080, ExcludePorts: []int{16006, 9090}, ExcludeCIDRs: mustCIDRs(t, "192.0.2.7/24,2001:db8::1,::ffff:203.0.113.0/120")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", newPlan(c, true))
	want := "{IPv6:true Ports:[9090 16006 16020] V4:[192.0.2.0/24 203.0.113.0/24] V6:[2001:db8::1/128] Proxy:16006}"
	if got != want {
		t.Errorf("plan:\ngot  %s\nwant %s", got, want)
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown backend", Config{AppPort: 8080, Backend: "pf"}, `invalid --backend "pf": want auto, nftables or iptables`},
		{"old nft spelling", Config{AppPort: 8080, Backend: "nft"}, `invalid --backend "nft": want auto, nftables or iptables`},
		{"bad ipv6", Config{AppPort: 8080, IPv6: "yes"}, `invalid --ipv6 "yes": want auto, true or false`},
		{"app port zero", Config{}, "invalid --app-port 0: want 1 to 65535"},
		{"app port too big", Config{AppPort: 65536}, "invalid --app-port 65536: want 1 to 65535"},
		{"proxy port negative", Config{AppPort: 8080, ProxyPort: -1}, "invalid --proxy-port -1: want 1 to 65535"},
		{"same ports", Config{AppPort: 16006}, "--app-port 16006, --proxy-port 16006 and --admin-port 16020: want three different ports"},
		{"app port excluded", Config{AppPort: 8080, ExcludePorts: []int{8080}}, "invalid --exclude-ports 8080: it is the app port, whose connections the sidecar must see"},
		{"excluded port zero", Config{AppPort: 8080, ExcludePorts: []int{0}}, "invalid --exclude-ports 0: want ports from 1 to 65535"},
		{"invalid cidr", Config{AppPort: 8080, ExcludeCIDRs: []netip.Prefix{{}}}, "invalid --exclude-cidrs invalid Prefix: want networks such as 192.0.2.0/24 or 2001:db8::/32"},
		{"several at once", Config{AppPort: 0, Backend: "pf"}, "invalid --backend \"pf\": want auto, nftables or iptables\ninvalid --app-port 0: want 1 to 65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.withDefaults()
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if err := Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseLists(t *testing.T) {
	tests := []struct {
		name, in string
		ports    bool
		want     string
	}{
		{"ports", " 9090, 8081,,", true, "[9090 8081]"},
		{"empty ports", "", true, "[]"},
		{"port word", "9090,metrics", true, `error: "metrics" is not a port: want comma-separated numbers from 1 to 65535 such as 9090,8081`},
		{"port too big", "70000", true, `error: "70000" is not a port: want comma-separated numbers from 1 to 65535 such as 9090,8081`},
		{"cidrs", "192.0.2.0/24, 2001:db8::/32,203.0.113.9", false, "[192.0.2.0/24 2001:db8::/32 203.0.113.9/32]"},
		{"cidr with bad bits", "192.0.2.0/33", false, `error: "192.0.2.0/33" is not a network: want comma-separated CIDRs such as 192.0.2.0/24,2001:db8::/32`},
		{"cidr word", "office", false, `error: "office" is not a network: want comma-separated CIDRs such as 192.0.2.0/24,2001:db8::/32`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			var v any
			var err error
			if tc.ports {
				v, err = ParsePorts(tc.in)
			} else {
				v, err = ParseCIDRs(tc.in)
			}
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = strings.Replace(fmt.Sprint(v), "<nil>", "", 1)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// fakeTools puts scripts named like the real tools first in PATH; each
// appends its arguments and stdin to a log, and fails when asked to delete
// (as the real one does on a first run, where there is nothing to delete),
// or on every line whose start is failOn.
func fakeTools(t *testing.T, failOn string, names ...string) string {
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
	case "$line" in "-D PREROUTING"*|"%s"*) fail=1;; esac
done
if [ $fail = 1 ]; then echo 'iptables-restore: line 2 failed' >&2; exit 1; fi
`, n, log, log, failOn)
		if err := os.WriteFile(filepath.Join(dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	return log
}

func TestRunExecutesIPTables(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		tools []string
		want  []string
		not   []string
	}{
		{
			name: "v4", cfg: Config{AppPort: 8080, IPv6: IPv6Off}, tools: []string{"iptables-restore"},
			want: []string{"== iptables-restore -w 5 --noflush", "-D PREROUTING", "--dport 16020 -j RETURN", "-j REDIRECT --to-ports 16006"},
			not:  []string{"ip6tables"},
		},
		{
			name: "v4 and v6", cfg: Config{AppPort: 8080, IPv6: IPv6On, ExcludeCIDRs: mustCIDRs(t, "2001:db8::/32")}, tools: []string{"iptables-restore", "ip6tables-restore"},
			want: []string{"== ip6tables-restore -w 5 --noflush", "-s 2001:db8::/32 -j RETURN"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := fakeTools(t, "-D PREROUTING", tc.tools...)
			tc.cfg.Backend = BackendIPTables
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
			for _, w := range tc.not {
				if strings.Contains(string(b), w) {
					t.Errorf("calls contain %q:\n%s", w, b)
				}
			}
		})
	}
}

func TestRunIPTablesErrors(t *testing.T) {
	t.Run("tool missing", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := Run(context.Background(), Config{AppPort: 8080, Backend: BackendIPTables, IPv6: IPv6Off})
		if err == nil || !strings.Contains(err.Error(), "iptables-restore not found") || !strings.Contains(err.Error(), "needs no tool") {
			t.Errorf("got %v, want an error naming iptables-restore and the way out", err)
		}
	})
	t.Run("tool fails", func(t *testing.T) {
		fakeTools(t, "-X", "iptables-restore")
		err := Remove(context.Background(), Config{AppPort: 8080, Backend: BackendIPTables, IPv6: IPv6Off})
		if err == nil || !strings.Contains(err.Error(), "line 2 failed") {
			t.Errorf("got %v, want the tool's output in the error", err)
		}
	})
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestChooseBackend(t *testing.T) {
	noNFT := classifyProbe(fmt.Errorf("netlink receive: %w", syscall.EPROTONOSUPPORT))
	tests := []struct {
		name    string
		backend Backend
		probe   error
		want    Backend
		wantErr string
		wantLog string
	}{
		{"auto with nf_tables", BackendAuto, nil, BackendNFTables, "", ""},
		{"auto without nf_tables", BackendAuto, noNFT, BackendIPTables, "", "falling back to iptables"},
		{"auto without permission", BackendAuto, classifyProbe(syscall.EPERM), "", "probe nf_tables: operation not permitted", ""},
		{"nftables asked for", BackendNFTables, noNFT, BackendNFTables, "", ""},
		{"iptables asked for", BackendIPTables, nil, BackendIPTables, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			b, err := choose(tc.backend, slog.New(slog.NewTextHandler(&log, nil)), func() error { return tc.probe })
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || b.name() != tc.want {
				t.Fatalf("got %v, %v; want %s", b, err, tc.want)
			}
			if !strings.Contains(log.String(), tc.wantLog) || (tc.wantLog == "" && log.Len() > 0) {
				t.Errorf("log %q, want %q", log.String(), tc.wantLog)
			}
		})
	}
}

func TestIPv6Wanted(t *testing.T) {
	has, hasNot := t.TempDir(), filepath.Join(t.TempDir(), "absent")
	tests := []struct {
		name    string
		mode    IPv6Mode
		sysctl  string
		want    bool
		wantErr string
	}{
		{"auto, kernel with IPv6", IPv6Auto, has, true, ""},
		{"auto, kernel without", IPv6Auto, hasNot, false, ""},
		{"true, kernel with IPv6", IPv6On, has, true, ""},
		{"true, kernel without", IPv6On, hasNot, false, "--ipv6=true but the kernel has no IPv6"},
		{"false", IPv6Off, has, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ipv6Wanted(tc.mode, tc.sysctl)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
