package event

import (
	"strings"
	"testing"
)

func TestIncarnation(t *testing.T) {
	inc := Incarnation()
	if len(inc) != 8 || strings.Trim(inc, "0123456789ABCDEFGHIJKLMNOPQRSTUV") != "" {
		t.Fatalf("Incarnation() = %q, want 8 base32hex characters", inc)
	}
	if Incarnation() != inc {
		t.Fatalf("Incarnation() changed within one process: %q then %q", inc, Incarnation())
	}
	seen := map[string]bool{inc: true}
	for range 1000 {
		n := newIncarnation()
		if seen[n] {
			t.Fatalf("newIncarnation() repeated %q", n)
		}
		seen[n] = true
	}
}

func TestIncarnationOf(t *testing.T) {
	tests := []struct {
		name, connID, want string
	}{
		{name: "relay id", connID: "0A1B2C3D-1z", want: "0A1B2C3D"},
		{name: "only the first dash", connID: "0A1B2C3D-1-2", want: "0A1B2C3D"},
		{name: "no dash", connID: "0A1B2C3D", want: ""},
		{name: "empty", connID: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IncarnationOf(tt.connID); got != tt.want {
				t.Errorf("IncarnationOf(%q) = %q, want %q", tt.connID, got, tt.want)
			}
		})
	}
}
