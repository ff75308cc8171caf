//go:build linux

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where a run happened, for the report.
type Machine struct {
	CPUs     int
	CPUModel string
	Kernel   string
	Versions [][2]string // program, version line
}

// describeMachine reads the CPU and kernel from /proc and asks every
// program in the run for its version.
func describeMachine(ctx context.Context, env PeerEnv) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	ask := func(name string, args ...string) {
		path := name
		if name != "go" && !strings.Contains(name, "/") {
			p, err := findBin(name)
			if err != nil {
				m.Versions = append(m.Versions, [2]string{name, "not installed"})
				return
			}
			path = p
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if err != nil {
			line = fmt.Sprintf("(%s %s failed: %v)", name, strings.Join(args, " "), err)
		}
		m.Versions = append(m.Versions, [2]string{name, line})
	}
	ask("go", "version")
	ask(env.SidecarBin, "version")
	m.Versions[len(m.Versions)-1][0] = "hangup sidecar"
	ask("haproxy", "-v")
	ask("nginx", "-v")
	ask("nghttpx", "--version")
	ask("h2load", "--version")
	return m, nil
}
