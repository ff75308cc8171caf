//go:build !hangup_pod

package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
)

// TestDrainFitsTerminationGrace checks that the default drain, plus the
// time events get to go out after it, ends before the kubelet's SIGKILL
// under Kubernetes' default terminationGracePeriodSeconds.
func TestDrainFitsTerminationGrace(t *testing.T) {
	grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	if defaultDrainTimeout+notifyFlushGrace >= grace {
		t.Errorf("drain %s + notify flush %s do not fit in the default termination grace period %s",
			defaultDrainTimeout, notifyFlushGrace, grace)
	}
}

// readmeFlagRow matches a row of README's flag tables: the flags (one or
// more, in backquotes) and the default column.
var readmeFlagRow = regexp.MustCompile("^\\| (`--[^|]+) \\| ([^|]+) \\|")

// readmeTable matches the heading of a subcommand's flag table.
var readmeTable = regexp.MustCompile("^### `sidecar ([a-z-]+)` flags$")

// readmeFlagTables reads README's flag tables: for each subcommand, each
// flag's default column.
func readmeFlagTables(t *testing.T) map[string]map[string]string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables := map[string]map[string]string{}
	var table map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			table = nil
			if m := readmeTable.FindStringSubmatch(line); m != nil {
				table = map[string]string{}
				tables[m[1]] = table
			}
			continue
		}
		m := readmeFlagRow.FindStringSubmatch(line)
		if table == nil || m == nil {
			continue
		}
		for _, name := range strings.Split(m[1], ",") {
			name = strings.Trim(strings.TrimSpace(name), "`")
			if _, dup := table[name]; dup {
				t.Errorf("README lists %s twice", name)
			}
			table[name] = strings.TrimSpace(m[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tables
}

// TestREADMEFlagTables keeps README's flag tables in step with the flags:
// every subcommand with flags has a table listing each flag once, with the
// default the flag really has (each default is declared by its owner; the
// README only repeats it). --config, the root's, may be listed or not.
func TestREADMEFlagTables(t *testing.T) {
	tables := readmeFlagTables(t)
	root := newRootCmd()
	for _, cmd := range root.Commands() {
		t.Run(cmd.Name(), func(t *testing.T) {
			documented, ok := tables[cmd.Name()]
			delete(tables, cmd.Name())
			own := 0
			cmd.LocalNonPersistentFlags().VisitAll(func(fl *pflag.Flag) {
				if fromSources(fl) {
					own++
				}
			})
			if !ok {
				if own > 0 {
					t.Errorf("README has no \"### `sidecar %s` flags\" table for its %d flags", cmd.Name(), own)
				}
				return
			}
			// Merge --config, a persistent flag of the root, into cmd.Flags().
			if err := cmd.ParseFlags(nil); err != nil {
				t.Fatal(err)
			}
			cmd.Flags().VisitAll(func(fl *pflag.Flag) {
				if fl.Name == "help" {
					return
				}
				doc, ok := documented["--"+fl.Name]
				delete(documented, "--"+fl.Name)
				if !ok {
					if fl.Name != configFlag {
						t.Errorf("README's %s table lacks --%s (default %q)", cmd.Name(), fl.Name, fl.DefValue)
					}
					return
				}
				if !sameDefault(doc, fl.DefValue) {
					t.Errorf("README says %s --%s defaults to %s, the flag to %q", cmd.Name(), fl.Name, doc, fl.DefValue)
				}
			})
			for name := range documented {
				t.Errorf("README's %s table lists %s, which it does not have", cmd.Name(), name)
			}
		})
	}
	for name := range tables {
		t.Errorf("README has a flag table for sidecar %s, which is no subcommand", name)
	}
}

// sameDefault compares README's default column with a flag's DefValue:
// `value` in backquotes, durations by value, and words for empty or
// zero ones.
func sameDefault(doc, def string) bool {
	switch {
	case def == "" || def == "[]":
		return doc == "none" || doc == "(required)"
	case def == "0" && doc == "(required)":
		return true
	case def == "0s":
		return strings.HasPrefix(doc, "off")
	}
	v := strings.Trim(doc, "`")
	if v == def {
		return true
	}
	a, aerr := time.ParseDuration(v)
	b, berr := time.ParseDuration(def)
	return aerr == nil && berr == nil && a == b
}

func TestSameDefault(t *testing.T) {
	tests := []struct {
		name, doc, def string
		want           bool
	}{
		{"equal", "`:16006`", ":16006", true},
		{"different", "`:16006`", ":16007", false},
		{"duration spelt short", "`5m`", "5m0s", true},
		{"different duration", "`5m`", "6m0s", false},
		{"none", "none", "", true},
		{"none but set", "none", "x", false},
		{"required", "(required)", "", true},
		{"required number", "(required)", "0", true},
		{"required but set", "(required)", "8080", false},
		{"empty list", "none", "[]", true},
		{"off", "off (wait)", "0s", true},
		{"off but set", "off", "1s", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameDefault(tt.doc, tt.def); got != tt.want {
				t.Errorf("sameDefault(%q, %q) = %v, want %v", tt.doc, tt.def, got, tt.want)
			}
		})
	}
}
