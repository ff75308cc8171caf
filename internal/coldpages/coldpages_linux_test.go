package coldpages

import (
	"os"
	"strings"
	"testing"

	"github.com/hangup-dev/hangup/internal/testtools"
)

func TestReadOnlyRanges(t *testing.T) {
	tests := []struct {
		name    string
		exe     string // default /app/sidecar
		maps    string
		want    []addrRange
		wantErr string
	}{
		{
			name: "text and rodata, not data or bss",
			maps: "00400000-00c6f000 r-xp 00000000 fd:00 12 /app/sidecar\n" +
				"00c6f000-01643000 r--p 0086f000 fd:00 12 /app/sidecar\n" +
				"01643000-016c2000 rw-p 01243000 fd:00 12 /app/sidecar\n" +
				"016c2000-03708000 rw-p 00000000 00:00 0\n",
			want: []addrRange{{0x400000, 0xc6f000}, {0xc6f000, 0x1643000}},
		},
		{
			name: "other files and shared mappings are left alone",
			maps: "7f0000000000-7f0000001000 r-xp 00000000 fd:00 13 /lib/other.so\n" +
				"7f0000001000-7f0000002000 r--s 00000000 fd:00 12 /app/sidecar\n" +
				"7f0000002000-7f0000003000 r--p 00000000 fd:00 14 /app/sidecar.old\n",
		},
		{
			name: "a path with a space",
			exe:  "/app/my sidecar",
			maps: "00400000-00401000 r-xp 00000000 fd:00 12 /app/my sidecar\n" +
				"00401000-00402000 r-xp 00000000 fd:00 13 /app/my\n",
			want: []addrRange{{0x400000, 0x401000}},
		},
		{
			name: "a read-only mapping with written pages (relocated RELRO) is left alone",
			maps: "00400000-00c6f000 r-xp 00000000 fd:00 12 /app/sidecar\n" +
				"Size:               8636 kB\n" +
				"Anonymous:             0 kB\n" +
				"VmFlags: rd ex mr mw me dw\n" +
				"00c6f000-00c71000 r--p 0086f000 fd:00 12 /app/sidecar\n" +
				"Size:                  8 kB\n" +
				"Anonymous:             8 kB\n" +
				"VmFlags: rd mr mw me dw ac\n" +
				"00c71000-01643000 r--p 00871000 fd:00 12 /app/sidecar\n" +
				"Anonymous:             0 kB\n",
			want: []addrRange{{0x400000, 0xc6f000}, {0xc71000, 0x1643000}},
		},
		{
			name:    "a bad range is an error naming the line",
			maps:    "00400000+00c6f000 r-xp 00000000 fd:00 12 /app/sidecar\n",
			wantErr: `line "00400000+00c6f000`,
		},
		{
			name:    "an empty range is an error",
			maps:    "00400000-00400000 r-xp 00000000 fd:00 12 /app/sidecar\n",
			wantErr: "want start-end in hex",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exe := tt.exe
			if exe == "" {
				exe = "/app/sidecar"
			}
			got, err := readOnlyRanges([]byte(tt.maps), exe)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ranges = %x, want %x", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("range %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// exeRSS is the Rss kB of this process's mappings of its executable.
func exeRSS(t *testing.T) float64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return testtools.SmapsKB(t, os.Getpid(), exe, "Rss")
}

// dataMarker lives in the executable's writable, file-backed data
// segment (initialised, no pointers): a change to it is lost if that
// mapping is dropped.
var dataMarker = [4]int{1, 2, 3, 4}

// TestRelease releases this test binary's start-up pages: its mapped
// pages must shrink, and the code that runs after (this test, the
// testing package) must keep working from the pages faulted back in.
func TestRelease(t *testing.T) {
	dataMarker[0] = 42
	before := exeRSS(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t)
	t.Logf("advised %d kB; the executable's RSS %.0f kB -> %.0f kB", n>>10, before, after)
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found in /proc/self/maps")
	}
	if after >= before {
		t.Errorf("the executable's RSS went from %.0f kB to %.0f kB: want it lower", before, after)
	}
	if dataMarker[0] != 42 {
		t.Errorf("a data segment variable set to 42 before Release reads %d after it: a writable mapping was dropped", dataMarker[0])
	}
}
