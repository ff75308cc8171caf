package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestInjectedArgumentsParse checks every container the injector writes in
// its golden patches, and every postStart hook command, against this
// binary's own flags: the webhook and the sidecar cannot drift apart.
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
			var containers []injected
			if json.Unmarshal(op.Value, &containers) != nil {
				var one injected
				if json.Unmarshal(op.Value, &one) != nil {
					continue
				}
				containers = append(containers, one)
			}
			for _, c := range containers {
				if ps := c.Lifecycle.PostStart.Exec.Command; len(ps) > 0 {
					// The hook runs the image's binary with its own args.
					containers = append(containers, injected{Name: c.Name + "/postStart", Args: ps[1:]})
				}
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

// injected is what the test reads of an injected container.
type injected struct {
	Name      string   `json:"name"`
	Args      []string `json:"args"`
	Lifecycle struct {
		PostStart struct {
			Exec struct {
				Command []string `json:"command"`
			} `json:"exec"`
		} `json:"postStart"`
	} `json:"lifecycle"`
}
