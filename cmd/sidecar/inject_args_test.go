package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestInjectedArgumentsParse checks every container the injector writes in
// its golden patches against this binary's own flags: the webhook and the
// sidecar cannot drift apart.
func TestInjectedArgumentsParse(t *testing.T) {
	goldens, err := filepath.Glob("../../pkg/inject/testdata/*.golden.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no injector goldens found: %v", err)
	}
	checked := 0
	for _, path := range goldens {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Patch []struct {
				Value json.RawMessage `json:"value"`
			} `json:"patch"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, op := range g.Patch {
			var containers []struct {
				Name string   `json:"name"`
				Args []string `json:"args"`
			}
			if json.Unmarshal(op.Value, &containers) != nil {
				var one struct {
					Name string   `json:"name"`
					Args []string `json:"args"`
				}
				if json.Unmarshal(op.Value, &one) != nil {
					continue
				}
				containers = append(containers, one)
			}
			for _, c := range containers {
				if len(c.Args) == 0 {
					continue
				}
				t.Run(filepath.Base(path)+"/"+c.Name, func(t *testing.T) {
					root := newRootCmd()
					cmd, rest, err := root.Find(c.Args)
					if err != nil || cmd == root {
						t.Fatalf("args %q name no sidecar command: %v", c.Args, err)
					}
					if err := cmd.ParseFlags(rest); err != nil {
						t.Fatalf("%s does not accept the injected args %q: %v", cmd.Name(), c.Args, err)
					}
					if cmd.Name() == "proxy" {
						mode, _ := cmd.Flags().GetString("mode")
						upstream, _ := cmd.Flags().GetString("upstream")
						if mode == "port" && upstream == "" {
							t.Errorf("port mode without --upstream: %q", c.Args)
						}
					}
					checked++
				})
			}
		}
	}
	if checked == 0 {
		t.Fatal("no injected container args were checked")
	}
}
