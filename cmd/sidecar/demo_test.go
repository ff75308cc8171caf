//go:build !hangup_pod

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo: every scenario must report what it should.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	log, _ := newLogger("text", "error")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runDemo(ctx, &out, log, 3*time.Second, nil); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0 failed") {
		t.Fatalf("demo output:\n%s", out.String())
	}
}
