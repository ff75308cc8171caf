//go:build linux

package harness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
)

// TestMeasureMemoryProbesFirst: hangup's footprint is read after the
// kubelet's probes, as every pod's sidecar is probed: answering one maps
// back code the sidecar released after start-up, so a reading taken
// before them is lower than any pod's.
func TestMeasureMemoryProbesFirst(t *testing.T) {
	var mu sync.Mutex
	var got []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" close="+map[bool]string{true: "yes", false: "no"}[r.Close])
		mu.Unlock()
	}))
	defer admin.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &Peer{Name: Hangup, Pid: os.Getpid(), AdminAddr: admin.Listener.Addr().String()}
	var atBase []string
	_, _ = MeasureMemory(ctx, p, 0, func(step string, _ ProcUsage) {
		if step == MemoryStepBase {
			mu.Lock()
			atBase = slices.Clone(got)
			mu.Unlock()
			cancel() // the rest of the scenario is not this test's
		}
	})
	for _, want := range []string{"GET /readyz close=yes", "GET /healthz close=yes"} {
		if !slices.Contains(atBase, want) {
			t.Errorf("the admin server had %q when the footprint was read; want %q among them (a kubelet probe: a new connection each)", atBase, want)
		}
	}
}
