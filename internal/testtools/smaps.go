package testtools

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// SmapsKB sums the kB of field ("Rss", "Referenced", ...) over pid's
// mappings of the file path, read from /proc/PID/smaps (Linux).
func SmapsKB(tb testing.TB, pid int, path, field string) float64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var in bool
	var kb float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			// start-end perms offset dev inode [path, which may hold spaces]
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == path
		case in && fields[0] == field+":":
			n, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				tb.Fatalf("smaps %q: %v", sc.Text(), err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return kb
}
