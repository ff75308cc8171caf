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
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("coldpages: %w", err)
	}
	ranges, err := readOnlyRanges(maps, exe)
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

// readOnlyRanges returns the ranges of the /proc/PID/maps text maps whose
// file is path and which are private and not writable ("r-xp", "r--p").
func readOnlyRanges(maps []byte, path string) ([]addrRange, error) {
	var out []addrRange
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 00400000-00c6f000 r-xp 00000000 fd:00 123 /path/to/exe
		fields := strings.Fields(sc.Text())
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
			return nil, fmt.Errorf("coldpages: /proc/self/maps line %q: want start-end in hex", sc.Text())
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("coldpages: reading /proc/self/maps: %w", err)
	}
	return out, nil
}
