package event

import (
	"strings"
	"testing"
)

func TestNewEventID(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := NewEventID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("NewEventID() = %q, want 32 lower-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewEventID() repeated %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkNewEventID(b *testing.B) {
	for b.Loop() {
		_ = NewEventID()
	}
}
