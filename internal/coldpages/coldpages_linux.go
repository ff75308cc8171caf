package coldpages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release drops this process's mappings of its executable's read-only
// pages and returns how many bytes of address range it advised. An error
// names the mapping that failed; mappings before it are released.
func Release() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("coldpages: the executable's path: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("coldpages: %w", err)
	}
	ranges, err := readOnlyRanges(smaps, exe)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range ranges {
		// A raw syscall: the range is not Go memory, so it has no []byte
		// for unix.Madvise to take.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("coldpages: madvise(%#x-%#x, MADV_DONTNEED): %w", r.start, r.end, e)
		}
		n += int64(r.end - r.start)
	}
	return n, nil
}

// addrRange is one mapping's [start, end).
type addrRange struct{ start, end uintptr }

// readOnlyRanges returns the ranges of the /proc/PID/smaps text's mappings
// whose file is path, which are private and not writable ("r-xp", "r--p"),
// and none of whose pages was ever written. A read-only mapping can still
// hold written pages: the dynamic loader relocates a PIE's or a cgo
// binary's RELRO data and then makes it read-only, and such pages show as
// Anonymous. Dropping them would bring back the file's unrelocated bytes,
// so those mappings are left alone.
func readOnlyRanges(smaps []byte, path string) ([]addrRange, error) {
	var out []addrRange
	var cur *addrRange // the mapping whose fields are being read, if eligible
	keep := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		// A field line: "Anonymous:          8 kB".
		if key, val, ok := strings.Cut(line, ":"); ok && !strings.Contains(key, " ") {
			if cur != nil && key == "Anonymous" && strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "kB")) != "0" {
				cur = nil
			}
			continue
		}
		// A mapping line: "00400000-00c6f000 r-xp 00000000 fd:00 123 /path/to/exe".
		keep()
		fields := strings.Fields(line)
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		if perms := fields[1]; len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("coldpages: /proc/self/smaps line %q: want start-end in hex", line)
		}
		cur = &addrRange{uintptr(start), uintptr(end)}
	}
	keep()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("coldpages: reading /proc/self/smaps: %w", err)
	}
	return out, nil
}
