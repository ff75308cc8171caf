package redirect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// TestRegisterFlags parses init-redirect's flags as the sidecar command
// does: the defaults come from their owners, every flag sets its field,
// and a bad list is refused naming the flag and the item.
func TestRegisterFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string // AppPort ProxyPort AdminPort Backend IPv6 ExcludePorts ExcludeCIDRs
		wantErr []string
	}{
		{name: "defaults", args: nil,
			want: fmt.Sprintf("0 %d %d auto auto [] []", ports.Proxy, ports.Admin)},
		{name: "every flag", args: []string{"--app-port=9090", "--proxy-port=17000", "--admin-port=17001", "--backend=iptables",
			"--ipv6=false", "--exclude-ports=8081, 9100", "--exclude-cidrs=192.0.2.0/24,2001:db8::1"},
			want: "9090 17000 17001 iptables false [8081 9100] [192.0.2.0/24 2001:db8::1/128]"},
		{name: "bad port", args: []string{"--exclude-ports=80,http"}, wantErr: []string{"exclude-ports", `"http"`, "not a port"}},
		{name: "bad network", args: []string{"--exclude-cidrs=192.0.2.0/33"}, wantErr: []string{"exclude-cidrs", "192.0.2.0/33", "not a network"}},
		{name: "not a number", args: []string{"--app-port=grpc"}, wantErr: []string{"app-port", "grpc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := pflag.NewFlagSet("init-redirect", pflag.ContinueOnError)
			fs.SetOutput(&strings.Builder{})
			c.RegisterFlags(fs)
			err := fs.Parse(tt.args)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("accepted %q", tt.args)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%d %d %d %s %s %v %v", c.AppPort, c.ProxyPort, c.AdminPort, c.Backend, c.IPv6, c.ExcludePorts, c.ExcludeCIDRs)
			if got != tt.want {
				t.Errorf("parsed %s, want %s", got, tt.want)
			}
		})
	}
	// --help shows the defaults a user gets.
	var c Config
	fs := pflag.NewFlagSet("init-redirect", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	for name, want := range map[string]string{"backend": string(BackendAuto), "ipv6": string(IPv6Auto)} {
		if got := fs.Lookup(name).DefValue; got != want {
			t.Errorf("--%s default shown as %q, want %q", name, got, want)
		}
	}
}
