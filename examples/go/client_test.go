package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
	"github.com/hangup-dev/hangup/internal/testtools"
)

// TestClient runs the built pod client (./client, what test/cluster runs
// in a pod) against the example: it joins, cancels its stream when a chat
// message tells it to and keeps running, and refuses to start without a
// target.
func TestClient(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "client")
	if out, err := exec.Command("go", "build", "-o", bin, "./client").CombinedOutput(); err != nil {
		t.Fatalf("go build ./client: %v\n%s", err, out)
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"cancels on command and keeps running", func(t *testing.T) {
			c := start(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			control, err := c.chat.Chat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := control.Send(&chatv1.ChatRequest{Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			if _, err := control.Recv(); err != nil {
				t.Fatal(err)
			}
			p := testtools.StartProcess(t, context.Background(), bin, "--target", c.appAddr, "--name", "c1")
			waitOutput(t, p, "joined ")
			waitSessions(t, ctx, c, 2)
			// Another member's command is not for it.
			if err := control.Send(&chatv1.ChatRequest{Text: "c2:cancel"}); err != nil {
				t.Fatal(err)
			}
			if err := control.Send(&chatv1.ChatRequest{Text: "c1:cancel"}); err != nil {
				t.Fatal(err)
			}
			waitOutput(t, p, "cancelled")
			waitSessions(t, ctx, c, 1)
			if strings.Count(p.Output(), "cancelled") != 1 || !strings.Contains(p.Output(), "c2:cancel") {
				t.Errorf("client output %q; want c2's command seen and ignored, one cancel", p.Output())
			}
			select {
			case <-p.Done():
				t.Fatalf("the client exited after its cancel: %v", p.Err())
			default:
			}
		}},
		{"no target", func(t *testing.T) {
			p := testtools.StartProcess(t, context.Background(), bin)
			err := p.Wait(30 * time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(p.Output(), "missing --target") {
				t.Errorf("client without --target: %v, output %q; want exit status 2 naming --target", err, p.Output())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// waitOutput waits until p has printed want, for at most 30 s.
func waitOutput(t *testing.T, p *testtools.Process, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.Output(), want) {
		select {
		case <-p.Done():
			t.Fatalf("client exited (%v) without printing %q: %q", p.Err(), want, p.Output())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("client did not print %q within 30s: %q", want, p.Output())
		}
	}
}
