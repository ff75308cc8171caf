//go:build linux

package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangup-dev/hangup/bench/harness"
)

func TestMain(m *testing.M) {
	harness.RunChildIfAsked()
	goleak.VerifyTestMain(m)
}

// TestSoakShort runs the soak for a few seconds: every way of dying at
// least a few times, exactly one event per disconnect, no leak.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the sidecar for about 15s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := run(ctx, config{Duration: 3 * time.Second, Rate: 40, Workers: 32, Log: &log})
	if err != nil {
		t.Fatalf("soak: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("\n%s", res.report())
	for k := range numKinds {
		if res.Episodes[k] < 2 {
			t.Errorf("%s: %d episodes, want at least 2", k, res.Episodes[k])
		}
	}
	if err := res.check(); err != nil {
		t.Errorf("soak:\n%v\nlog:\n%s", err, log.String())
	}
}

// TestCheckFails: the check catches each broken promise (a check that
// cannot fail would be worthless).
func TestCheckFails(t *testing.T) {
	stream := eventKey{Scope: 1, Reason: 1}
	good := func() *result {
		return &result{Caused: map[eventKey]int{stream: 3}, Received: map[eventKey]int{stream: 3},
			Base: harness.ProcUsage{FDs: 10, RSSBytes: 10 << 20}, End: harness.ProcUsage{FDs: 10, RSSBytes: 12 << 20},
			Goroutine: [2]int{40, 42}}
	}
	if err := good().check(); err != nil {
		t.Fatalf("a clean result fails: %v", err)
	}
	for _, tc := range []struct {
		name   string
		break_ func(r *result)
	}{
		{"missing event", func(r *result) { r.Received[stream] = 2 }},
		{"extra event", func(r *result) { r.Received[stream] = 4 }},
		{"duplicate", func(r *result) { r.Dups = []string{"127.0.0.1:1: 2 × stream RST_STREAM"} }},
		{"stranger", func(r *result) { r.Strangers = 1 }},
		{"fd leak", func(r *result) { r.End.FDs = 100 }},
		{"rss growth", func(r *result) { r.End.RSSBytes = 100 << 20 }},
		{"goroutine leak", func(r *result) { r.Goroutine = [2]int{10, 100} }},
		{"goroutines not exported", func(r *result) { r.Goroutine = [2]int{-1, -1} }},
		{"failed episode", func(r *result) { r.Failed = []string{"close: dial: refused"} }},
		{"traced, no span exported", func(r *result) { r.Traced = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.break_(r)
			if r.check() == nil {
				t.Fatal("check passed")
			}
		})
	}
}
