//go:build linux

package harness

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/internal/testtools"
)

// TestStartPeerAbandonsNoCall: an app that answers its first call after
// 1.5s (it warms up). StartPeer must wait for the answer: a call it
// cancelled in flight would be a client disconnect, and hangup would report
// it (RST_STREAM) to a soak that never caused it. Before, each of its
// calls had 1s.
func TestStartPeerAbandonsNoCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the sidecar")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sidecar, _, err := BuildBinaries(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	var first sync.Once
	warmUp := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		first.Do(func() {
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-ctx.Done():
			}
		})
		return h(ctx, req)
	}
	appAddr, stopApp, err := StartApp(grpc.UnaryInterceptor(warmUp))
	if err != nil {
		t.Fatal(err)
	}
	defer stopApp()
	recv := demoapp.NewReceiver(16)
	notifyAddr, stopRecv, err := StartReceiver(recv)
	if err != nil {
		t.Fatal(err)
	}
	defer stopRecv()
	p, err := StartPeer(ctx, Hangup, PeerEnv{Dir: dir, AppAddr: appAddr, NotifyAddr: notifyAddr, SidecarBin: sidecar})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	// A disconnect of the test's own: its two events must be the first.
	c, err := h2raw.Dial(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := OpenStreams(c, 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	own := c.Conn.LocalAddr().String()
	_ = c.Reset()
	for _, r := range testtools.Receive(t, recv.Events, 2, 10*time.Second) {
		if r.Event.PeerAddress != own {
			t.Errorf("event %s %s from %s before those of the test's own disconnect (%s): StartPeer's probe caused it",
				r.Event.Scope, r.Event.Reason, r.Event.PeerAddress, own)
		}
	}
}
