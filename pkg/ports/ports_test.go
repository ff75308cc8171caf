package ports

import "testing"

// TestDefaultsAvoidReservedPorts pins the choice of defaults: a pod that
// also runs Istio, Linkerd, Dapr, Consul or a common app must be able to
// run the sidecar unchanged.
func TestDefaultsAvoidReservedPorts(t *testing.T) {
	defaults := []struct {
		name string
		port int
	}{
		{"Proxy", Proxy},
		{"Admin", Admin},
		{"Notify", Notify},
		{"Watch", Watch},
	}
	seen := map[int]string{}
	for _, d := range defaults {
		if d.port < 1024 || d.port > 65535 {
			t.Errorf("%s = %d: want an unprivileged port (1024 to 65535)", d.name, d.port)
		}
		if other, ok := seen[d.port]; ok {
			t.Errorf("%s = %d: the same port as %s", d.name, d.port, other)
		}
		seen[d.port] = d.name
		for _, r := range Reserved {
			if r.Contains(d.port) {
				t.Errorf("%s = %d: reserved by %s (%d–%d)", d.name, d.port, r.Owner, r.First, r.Last)
			}
		}
	}
}

func TestRangeContains(t *testing.T) {
	r := Range{15000, 15090, "Istio"}
	for port, want := range map[int]bool{14999: false, 15000: true, 15006: true, 15090: true, 15091: false} {
		if got := r.Contains(port); got != want {
			t.Errorf("Contains(%d) = %v, want %v", port, got, want)
		}
	}
}
