package keepalive

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // substrings the error must hold; nil: valid
	}{
		{"defaults are valid", func(*Config) {}, nil},
		{"everything at the minimum", func(c *Config) {
			*c = Config{Time: time.Second, Timeout: time.Second, MinTime: time.Second,
				MaxConnectionIdle: time.Second, MaxConnectionAge: time.Second, MaxConnectionAgeGrace: time.Second,
				RTTInterval: time.Second}
		}, nil},
		{"time below minimum", func(c *Config) { c.Time = 500 * time.Millisecond },
			[]string{"keepalive-time 500ms is below the minimum 1s"}},
		{"time zero", func(c *Config) { c.Time = 0 }, []string{"keepalive-time must be > 0"}},
		{"timeout zero", func(c *Config) { c.Timeout = 0 }, []string{"keepalive-timeout must be > 0"}},
		{"timeout negative", func(c *Config) { c.Timeout = -time.Second }, []string{"keepalive-timeout must be > 0", "got -1s"}},
		{"timeout below minimum", func(c *Config) { c.Timeout = 999 * time.Millisecond },
			[]string{"keepalive-timeout 999ms is below the minimum 1s"}},
		{"min time below minimum", func(c *Config) { c.MinTime = 10 * time.Millisecond },
			[]string{"keepalive-min-time 10ms is below the minimum 1s"}},
		{"idle negative", func(c *Config) { c.MaxConnectionIdle = -time.Minute },
			[]string{"max-connection-idle -1m0s must not be negative", "0 means off"}},
		{"idle below minimum", func(c *Config) { c.MaxConnectionIdle = time.Millisecond },
			[]string{"max-connection-idle 1ms is below the minimum 1s"}},
		{"age below minimum", func(c *Config) { c.MaxConnectionAge = 100 * time.Millisecond },
			[]string{"max-connection-age 100ms is below the minimum 1s"}},
		{"grace negative", func(c *Config) { c.MaxConnectionAgeGrace = -1 },
			[]string{"max-connection-age-grace -1ns must not be negative", "0 means infinite"}},
		{"grace below minimum", func(c *Config) { c.MaxConnectionAgeGrace = 900 * time.Millisecond },
			[]string{"max-connection-age-grace 900ms is below the minimum 1s"}},
		{"rtt interval negative", func(c *Config) { c.RTTInterval = -time.Second },
			[]string{"rtt-interval -1s must not be negative", "0 means off"}},
		{"rtt interval below minimum", func(c *Config) { c.RTTInterval = 100 * time.Millisecond },
			[]string{"rtt-interval 100ms is below the minimum 1s"}},
		{"every error is reported", func(c *Config) { *c = Config{MaxConnectionAge: -1} },
			[]string{"keepalive-time must be > 0", "keepalive-timeout must be > 0", "keepalive-min-time must be > 0", "max-connection-age -1ns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	want := Config{Time: 30 * time.Second, Timeout: 10 * time.Second, MinTime: 5 * time.Minute}
	if got := DefaultConfig(); got != want {
		t.Errorf("DefaultConfig() = %+v, want %+v", got, want)
	}
}

func TestTCPUserTimeout(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"defaults", DefaultConfig(), 40 * time.Second},
		{"minimums", Config{Time: time.Second, Timeout: time.Second}, 2 * time.Second},
		{"long", Config{Time: 2 * time.Hour, Timeout: 20 * time.Second}, 2*time.Hour + 20*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.TCPUserTimeout(); got != tt.want {
				t.Errorf("TCPUserTimeout() = %s, want %s", got, tt.want)
			}
		})
	}
}

// An unvalidated Config must not make the policy spin or panic.
func TestNewNormalizesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Config
	}{
		{"zero", Config{}, Config{Time: time.Second, Timeout: time.Second, MinTime: time.Second}},
		{"negative optional ones are off", Config{Time: time.Hour, Timeout: time.Hour, MinTime: time.Hour,
			MaxConnectionIdle: -1, MaxConnectionAge: -1, MaxConnectionAgeGrace: -1, RTTInterval: -1},
			Config{Time: time.Hour, Timeout: time.Hour, MinTime: time.Hour}},
		{"tiny optional ones are raised", Config{Time: time.Hour, Timeout: time.Hour, MinTime: time.Hour,
			MaxConnectionIdle: 1, MaxConnectionAge: 1, MaxConnectionAgeGrace: 1, RTTInterval: 1},
			Config{Time: time.Hour, Timeout: time.Hour, MinTime: time.Hour,
				MaxConnectionIdle: time.Second, MaxConnectionAge: time.Second, MaxConnectionAgeGrace: time.Second,
				RTTInterval: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.normalized(); got != tt.want {
				t.Errorf("normalized() = %+v, want %+v", got, tt.want)
			}
			p := New(tt.cfg, t0, half)
			if d := p.Deadline(); !d.After(t0) {
				t.Errorf("Deadline() = %s, want after the start", d.Sub(t0))
			}
		})
	}
}
