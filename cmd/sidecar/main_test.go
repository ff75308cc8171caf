package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestProxyRejectsBadValues checks that every bad value is refused with one
// line naming the flag, the value and what is expected.
func TestProxyRejectsBadValues(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(cfg, []byte("upstream: 127.0.0.1:1\nlisten-addr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the one-line error
	}{
		{"missing upstream", []string{"proxy"}, nil, []string{"--upstream", "host:port"}},
		{"unparseable upstream", []string{"proxy", "--upstream", "nope"}, nil, []string{"--upstream", `"nope"`, "host:port"}},
		{"relative unix path", []string{"proxy", "--upstream", "unix://rel/sock"}, nil, []string{"--upstream", "unix:///absolute/path"}},
		{"bad port", []string{"proxy", "--upstream", "127.0.0.1:http2x"}, nil, []string{"--upstream", "not a port"}},
		{"bad listen", []string{"proxy", "--upstream", "127.0.0.1:1", "--listen", "16006"}, nil, []string{"--listen", `"16006"`, "host:port"}},
		{"unreadable cert", []string{"proxy", "--upstream", "127.0.0.1:1", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"}, nil,
			[]string{"--tls-cert", "/nonexistent.pem", "PEM"}},
		{"cert without key", []string{"proxy", "--upstream", "127.0.0.1:1", "--tls-cert", "/x.pem"}, nil, []string{"--tls-key", "both or neither"}},
		{"bad log format", []string{"proxy", "--upstream", "127.0.0.1:1", "--log-format", "xml"}, nil, []string{"--log-format", `"xml"`, "text or json"}},
		{"bad log level", []string{"proxy", "--upstream", "127.0.0.1:1", "--log-level", "loud"}, nil, []string{"--log-level", "debug, info"}},
		{"bad duration flag", []string{"proxy", "--upstream", "127.0.0.1:1", "--drain-timeout", "soon"}, nil, []string{"drain-timeout", "soon"}},
		{"keepalive below the minimum", []string{"proxy", "--upstream", "127.0.0.1:1", "--keepalive-time", "100ms"}, nil, []string{"keepalive-time", "100ms", "1s"}},
		{"rtt interval below the minimum", []string{"proxy", "--upstream", "127.0.0.1:1", "--rtt-interval", "10ms"}, nil, []string{"rtt-interval", "10ms", "1s"}},
		{"negative abuse limit", []string{"proxy", "--upstream", "127.0.0.1:1", "--max-empty-frames", "0"}, nil, []string{"--max-empty-frames", "at least 1"}},
		{"bad notify address", []string{"proxy", "--upstream", "127.0.0.1:1", "--notify-addr", "nowhere"}, nil, []string{"notify-addr", "nowhere"}},
		{"bad watch address", []string{"proxy", "--upstream", "127.0.0.1:1", "--watch-addr", "unix://rel"}, nil, []string{"--watch-addr", "unix:///absolute/path"}},
		{"negative watch buffer", []string{"proxy", "--upstream", "127.0.0.1:1", "--watch-buffer", "-1"}, nil, []string{"--watch-buffer -1", "at least 1"}},
		{"bad reconnect grace", []string{"proxy", "--upstream", "127.0.0.1:1", "--reconnect-grace", "/chat.v1.Chat/Sub=soon", "--session-header", "x-session-id"}, nil,
			[]string{"--reconnect-grace", `"/chat.v1.Chat/Sub=soon"`, `grace "soon"`, "/pkg.Service/Method=DURATION"}},
		{"reconnect grace on a bad method", []string{"proxy", "--upstream", "127.0.0.1:1", "--reconnect-grace", "chat=10s", "--session-header", "x-session-id"}, nil,
			[]string{"--reconnect-grace", `method "chat"`, "/pkg.Service/*"}},
		{"reconnect grace without a session header", []string{"proxy", "--upstream", "127.0.0.1:1", "--reconnect-grace", "/chat.v1.Chat/*=10s"}, nil,
			[]string{"missing --session-header", "--reconnect-grace", "x-session-id"}},
		{"bad session header", []string{"proxy", "--upstream", "127.0.0.1:1", "--reconnect-grace", "/chat.v1.Chat/*=10s", "--session-header", "x-hangup-stream-id"}, nil,
			[]string{"--session-header", `"x-hangup-stream-id"`, "never by the client"}},
		{"bad reconnect grace in the environment", []string{"proxy", "--upstream", "127.0.0.1:1", "--session-header", "x-session-id"},
			map[string]string{"HANGUP_RECONNECT_GRACE": "/chat.v1.Chat/*=0s"}, []string{"--reconnect-grace", `"/chat.v1.Chat/*=0s"`, "above 0s"}},
		{"bad environment value", []string{"proxy"}, map[string]string{"HANGUP_UPSTREAM": "nope"}, []string{"--upstream", `"nope"`}},
		{"bad environment number", []string{"proxy", "--upstream", "127.0.0.1:1"}, map[string]string{"HANGUP_MAX_HEADER_LIST_SIZE": "lots"},
			[]string{"HANGUP_MAX_HEADER_LIST_SIZE", "lots"}},
		{"unknown config key", []string{"proxy", "--config", cfg}, nil, []string{"--config", "unknown keys listen-addr"}},
		{"missing config file", []string{"proxy", "--config", filepath.Join(dir, "none.yaml")}, nil, []string{"--config", "none.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cmd := newRootCmd()
			cmd.SetArgs(tt.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.ExecuteContext(context.Background())
			if err == nil {
				t.Fatal("accepted a bad value")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}
