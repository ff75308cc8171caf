//go:build linux

package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcUsage is the resource use of a process and all its descendants (nginx
// and nghttpx fork workers; their CPU and memory count for the peer).
type ProcUsage struct {
	CPUSeconds float64 // utime+stime, summed
	RSSBytes   int64   // VmRSS, summed
	AnonBytes  int64   // RssAnon of VmRSS (heap, stacks), summed; the rest is file pages and shared memory
	FDs        int     // entries of /proc/PID/fd, summed
	Threads    int     // Threads of /proc/PID/status, summed
}

// Usage reads /proc for pid and its descendants.
func Usage(pid int) (ProcUsage, error) {
	var u ProcUsage
	pids, err := tree(pid)
	if err != nil {
		return u, err
	}
	for _, p := range pids {
		cpu, err := cpuSeconds(p)
		if err != nil {
			return u, err
		}
		st, err := status(p)
		if err != nil {
			return u, err
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			return u, fmt.Errorf("count fds of pid %d: %w", p, err)
		}
		u.CPUSeconds += cpu
		u.RSSBytes += st.rss
		u.AnonBytes += st.anon
		u.Threads += st.threads
		u.FDs += len(fds)
	}
	return u, nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// which may itself contain spaces and parentheses.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no ')' after the command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

func cpuSeconds(pid int) (float64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// After the name: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields, want at least 13", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse utime %q stime %q of pid %d", f[11], f[12], pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// procStatus is what Usage reads from /proc/PID/status.
type procStatus struct {
	rss, anon int64 // bytes
	threads   int
}

func status(pid int) (procStatus, error) {
	var st procStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:": // in kB
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			st.rss = kb << 10
		case "RssAnon:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			st.anon = kb << 10
		case "Threads:":
			st.threads, _ = strconv.Atoi(f[1])
		}
	}
	return st, nil
}

// tree returns pid and every descendant, found through the ppid field of
// each /proc/N/stat.
func tree(pid int) ([]int, error) {
	entries, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil || len(f) < 2 {
			continue // exited meanwhile
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}
