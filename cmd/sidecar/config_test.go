// These tests cover every subcommand, so only the default build (which has
// them all) runs them; flags, config and logging are the same code in both.

//go:build !hangup_pod

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sourceCase is one subcommand and one of its typed flags, with three good
// values (for the flag, its HANGUP_ variable and its --config key) and one
// value the flag's type refuses.
type sourceCase struct {
	cmd, flag             string
	byFlag, byEnv, byFile string
	bad                   string
}

var sourceCases = []sourceCase{
	{"proxy", "max-header-list-size", "5000", "6000", "7000", "lots"},
	{"proxy", "rtt-interval", "2s", "3s", "4s", "often"},
	{"inject", "ca-bundle-resync", "2m0s", "3m0s", "4m0s", "often"},
	{"init-redirect", "app-port", "9091", "9092", "9093", "http"},
	{"wait", "timeout", "1m0s", "2m0s", "3m0s", "forever"},
	{"notify-check", "timeout", "1s", "2s", "3s", "briefly"},
	{"demo", "wait", "4s", "5s", "6s", "a-while"},
}

// runSources runs `sidecar <cmd> args...` with the subcommand's work
// replaced by reading flag's final value.
func runSources(t *testing.T, c sourceCase, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	sub, _, err := root.Find([]string{c.cmd})
	if err != nil || sub == root {
		t.Fatalf("no subcommand %q: %v", c.cmd, err)
	}
	var got string
	sub.Run = nil
	sub.RunE = func(cmd *cobra.Command, _ []string) error {
		got = cmd.Flags().Lookup(c.flag).Value.String()
		return nil
	}
	root.SetArgs(append([]string{c.cmd}, args...))
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	err = root.ExecuteContext(context.Background())
	return got, err
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hangup.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envName(flag string) string {
	return "HANGUP_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestSubcommandSources checks, for every subcommand, that a flag, its
// HANGUP_ variable and its --config key each set it, in the precedence
// flag > variable > file.
func TestSubcommandSources(t *testing.T) {
	for _, c := range sourceCases {
		t.Run(c.cmd, func(t *testing.T) {
			file := writeConfig(t, c.flag+": "+c.byFile+"\n")
			steps := []struct {
				name string
				env  bool
				args []string
				want string
			}{
				{"config file", false, []string{"--config", file}, c.byFile},
				{"variable over file", true, []string{"--config", file}, c.byEnv},
				{"flag over both", true, []string{"--config", file, "--" + c.flag, c.byFlag}, c.byFlag},
				{"variable alone", true, nil, c.byEnv},
			}
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					if s.env {
						t.Setenv(envName(c.flag), c.byEnv)
					}
					got, err := runSources(t, c, s.args...)
					if err != nil {
						t.Fatal(err)
					}
					if got != s.want {
						t.Errorf("--%s is %q, want %q", c.flag, got, s.want)
					}
				})
			}
		})
	}
}

// TestSubcommandSourceErrors checks, for every subcommand, that an unknown
// config key and a bad value from each source are usage errors (exit 2)
// on one line naming what was wrong.
func TestSubcommandSourceErrors(t *testing.T) {
	for _, c := range sourceCases {
		t.Run(c.cmd, func(t *testing.T) {
			steps := []struct {
				name string
				env  string
				args []string
				want []string
			}{
				{"unknown key", "", []string{"--config", writeConfig(t, c.flag+": "+c.byFile+"\nno-such-flag: 1\n")},
					[]string{"--config", "unknown keys no-such-flag", c.cmd}},
				{"bad file value", "", []string{"--config", writeConfig(t, c.flag+": "+c.bad+"\n")},
					[]string{c.flag, c.bad, "--config"}},
				{"bad variable", c.bad, nil, []string{envName(c.flag), c.bad}},
				{"bad flag", "", []string{"--" + c.flag, c.bad}, []string{c.flag, c.bad}},
				{"not YAML", "", []string{"--config", writeConfig(t, "[")}, []string{"--config", "not YAML"}},
			}
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					if s.env != "" {
						t.Setenv(envName(c.flag), s.env)
					}
					_, err := runSources(t, c, s.args...)
					if err == nil {
						t.Fatal("accepted")
					}
					if code := exitCode(err); code != 2 {
						t.Errorf("exit status %d for %v, want 2 (usage)", code, err)
					}
					msg := err.Error()
					if strings.Contains(msg, "\n") {
						t.Errorf("error spans lines: %q", msg)
					}
					for _, w := range s.want {
						if !strings.Contains(msg, w) {
							t.Errorf("error %q does not mention %q", msg, w)
						}
					}
				})
			}
		})
	}
}

// TestEverySubcommandHasSourceCase keeps sourceCases complete: a new
// subcommand with flags must show that it takes them the same way.
func TestEverySubcommandHasSourceCase(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range sourceCases {
		covered[c.cmd] = true
	}
	for _, sub := range newRootCmd().Commands() {
		own := 0
		sub.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if fromSources(f) {
				own++
			}
		})
		if own > 0 && !covered[sub.Name()] {
			t.Errorf("subcommand %q has %d flags but no case in sourceCases", sub.Name(), own)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"usage", usageError{errors.New("invalid --x")}, 2},
		{"wrapped usage", errors.Join(errors.New("starting"), usageError{errors.New("invalid --x")}), 2},
		{"failure", errors.New("listen: address in use"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestConfigValueShapes checks how YAML values of each shape become flag
// values: an empty key clears the flag rather than setting "<nil>", a list
// becomes comma-separated, and a mapping is a usage error naming the key.
func TestConfigValueShapes(t *testing.T) {
	target := sourceCase{cmd: "notify-check", flag: "target"}
	tests := []struct {
		name    string
		yaml    string
		want    string
		wantErr []string
	}{
		{name: "string", yaml: "target: 127.0.0.1:15091\n", want: "127.0.0.1:15091"},
		{name: "empty value", yaml: "target:\n", want: ""},
		{name: "list", yaml: "target: [a, b]\n", want: "a,b"},
		{name: "whole number", yaml: "target: 15091\n", want: "15091"},
		{name: "mapping", yaml: "target: {host: a}\n", wantErr: []string{"target", "--config", "a mapping"}},
		{name: "list of mappings", yaml: "target: [{host: a}]\n", wantErr: []string{"target", "--config", "a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runSources(t, target, "--config", writeConfig(t, tt.yaml))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Errorf("--target is %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; --target is %q", got)
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exit status %d for %v, want 2", code, err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestReconnectGraceFromAList: --reconnect-grace may be a YAML list in
// --config, one rule per item, as readable as the flag's comma list.
func TestReconnectGraceFromAList(t *testing.T) {
	c := sourceCase{cmd: "proxy", flag: "reconnect-grace"}
	got, err := runSources(t, c, "--config", writeConfig(t, "reconnect-grace:\n  - /chat.v1.Chat/Subscribe=10s\n  - /game.v1.Game/*=5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "/chat.v1.Chat/Subscribe=10s,/game.v1.Game/*=5s"; got != want {
		t.Errorf("--reconnect-grace is %q, want %q", got, want)
	}
}
