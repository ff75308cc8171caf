package notify

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; empty: valid
	}{
		{"zero is valid (disabled, defaults)", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"unix socket", Config{Addr: "unix:///run/app/notify.sock"}, ""},
		{"ipv6", Config{Addr: "[::1]:15091"}, ""},
		{"no port", Config{Addr: "127.0.0.1"}, "notify-addr"},
		{"empty host", Config{Addr: ":15091"}, "notify-addr"},
		{"bad port", Config{Addr: "127.0.0.1:http"}, "notify-addr"},
		{"port out of range", Config{Addr: "127.0.0.1:70000"}, "notify-addr"},
		{"relative unix path", Config{Addr: "unix://run/notify.sock"}, "notify-addr"},
		{"tiny timeout", Config{Timeout: time.Microsecond}, "notify-timeout"},
		{"negative queue", Config{QueueSize: -1}, "notify-queue-size"},
		{"negative batch", Config{BatchMax: -1}, "notify-batch-max"},
		{"negative batch delay", Config{BatchDelay: -time.Millisecond}, "notify-batch-delay"},
		{"retry max below min", Config{RetryMin: time.Second, RetryMax: time.Millisecond}, "notify-retry-max"},
		{"pseudo header", Config{Headers: []string{":path"}}, "notify-headers"},
		{"bad header", Config{Headers: []string{"x y"}}, "notify-headers"},
		{"good headers", Config{Headers: []string{"X-Tenant", "user-agent"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	got := Config{Addr: "127.0.0.1:1", RetryMin: 2 * time.Second}.withDefaults()
	d := DefaultConfig()
	if got.Timeout != d.Timeout || got.QueueSize != d.QueueSize || got.BatchMax != d.BatchMax ||
		got.BatchDelay != d.BatchDelay || got.UnimplementedRetry != d.UnimplementedRetry || got.Logger == nil {
		t.Errorf("withDefaults() = %+v, want the defaults filled in", got)
	}
	if got.RetryMax != 2*time.Second {
		t.Errorf("RetryMax = %s, want it raised to RetryMin 2s", got.RetryMax)
	}
	if got.Addr != "127.0.0.1:1" {
		t.Errorf("Addr = %q, want it kept", got.Addr)
	}
	if (Config{}).withDefaults().Addr != "" {
		t.Error("an empty Addr must stay empty (disabled)")
	}
}

func TestHeaderAllowList(t *testing.T) {
	m := Config{Headers: []string{"X-Tenant", "user-agent"}}.HeaderAllowList()
	if !m["x-tenant"] || !m["user-agent"] || len(m) != 2 {
		t.Errorf("HeaderAllowList() = %v, want x-tenant and user-agent", m)
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name   string
		failed int
		ceil   time.Duration
	}{
		{"first", 1, 25 * time.Millisecond},
		{"second doubles", 2, 50 * time.Millisecond},
		{"capped", 10, time.Second},
		{"no overflow", 1000, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				d := backoffDelay(25*time.Millisecond, time.Second, tt.failed)
				if d < tt.ceil/2 || d > tt.ceil {
					t.Fatalf("backoffDelay(%d) = %s, want within [%s, %s]", tt.failed, d, tt.ceil/2, tt.ceil)
				}
			}
		})
	}
}
