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

// readmeFlagRow matches a row of README's flag table: the flags (one or
// more, in backquotes) and the default column.
var readmeFlagRow = regexp.MustCompile("^\\| (`--[^|]+) \\| ([^|]+) \\|")

// TestREADMEProxyFlags keeps README's `sidecar proxy` table in step with
// the flags: every flag is listed once, with the default the flag really
// has (each default is declared by its owner; the README only repeats it).
func TestREADMEProxyFlags(t *testing.T) {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			in = line == "### `sidecar proxy` flags"
			continue
		}
		m := readmeFlagRow.FindStringSubmatch(line)
		if !in || m == nil {
			continue
		}
		for _, name := range strings.Split(m[1], ",") {
			name = strings.Trim(strings.TrimSpace(name), "`")
			if _, dup := documented[name]; dup {
				t.Errorf("README lists %s twice", name)
			}
			documented[name] = strings.TrimSpace(m[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(documented) == 0 {
		t.Fatal("no `sidecar proxy` flag table in README.md")
	}
	root := newRootCmd()
	cmd, _, err := root.Find([]string{"proxy"})
	if err != nil {
		t.Fatal(err)
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
			t.Errorf("README's proxy table lacks --%s (default %q)", fl.Name, fl.DefValue)
			return
		}
		if !sameDefault(doc, fl.DefValue) {
			t.Errorf("README says --%s defaults to %s, the flag to %q", fl.Name, doc, fl.DefValue)
		}
	})
	for name := range documented {
		t.Errorf("README's proxy table lists %s, which proxy does not have", name)
	}
}

// sameDefault compares README's default column with a flag's DefValue:
// `value` in backquotes, durations by value, and words for empty ones.
func sameDefault(doc, def string) bool {
	switch {
	case def == "" || def == "[]":
		return doc == "none" || doc == "(required)"
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
