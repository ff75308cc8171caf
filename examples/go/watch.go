package main

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

// watcher reads the sidecar's events with DisconnectWatch.Watch (pull
// mode) instead of serving Notify: for apps that would rather not run a
// second server.
//
// It keeps its position, the incarnation and sequence of the last event
// it handled, and sends it back each time it calls Watch again, so that it
// gets every event it missed while its stream was down (as long as the
// sidecar's replay buffer holds them) and none it has handled twice. The
// position is kept in memory: an app that restarts has no sessions left
// to free, and starts again from the sidecar's oldest buffered event.
type watcher struct {
	a    *app
	addr string

	// Owned by run's goroutine.
	inc   string
	after uint64
}

// run calls Watch until ctx ends, resuming after each stream that ends.
// grpc-go's channel waits for the sidecar (WaitForReady) with its capped
// reconnect backoff, so a sidecar that restarts is found again at once.
func (w *watcher) run(ctx context.Context) error {
	target := w.addr
	if !strings.HasPrefix(target, "unix://") {
		target = "passthrough:///" + target
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: backoff.DefaultConfig.BaseDelay, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * backoff.DefaultConfig.BaseDelay,
		}}))
	if err != nil {
		return fmt.Errorf("watch client for %s: %w", w.addr, err)
	}
	defer cc.Close()
	client := notifyv1.NewDisconnectWatchClient(cc)
	for ctx.Err() == nil {
		err := w.stream(ctx, client)
		if ctx.Err() == nil {
			w.a.log.Warn("watch stream ended; resuming", "addr", w.addr, "incarnation", w.inc, "after_sequence", w.after, "err", err)
		}
	}
	return nil
}

// stream reads one Watch stream until it ends.
func (w *watcher) stream(ctx context.Context, client notifyv1.DisconnectWatchClient) error {
	s, err := client.Watch(ctx, &notifyv1.WatchRequest{Incarnation: w.inc, AfterSequence: w.after}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		w.handle(r)
	}
}

// handle frees what one watched event names and moves the position past
// it, over any gap the sidecar reported.
func (w *watcher) handle(r *notifyv1.WatchResponse) {
	ev := r.GetEvent()
	a := w.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if inc := ev.GetIncarnation(); inc != w.inc {
		// A new sidecar process: whatever another one relayed is gone,
		// even if its SCOPE_SIDECAR event was lost in a gap.
		a.freeAllButLocked(inc, ev.GetEventId())
		w.inc = inc
	}
	if n := r.GetMissedBefore(); n > 0 {
		// Those events named streams the sidecar also reset toward the
		// app, so their handlers ended and freed their sessions; only
		// state that outlives a handler would need reconciling here.
		a.log.Warn("the sidecar's buffer no longer held events this app missed", "missed", n, "before_sequence", r.GetSequence())
	}
	a.log.Debug("watched event", "sequence", r.GetSequence(), "event_id", ev.GetEventId(), "scope", ev.GetScope(),
		"session", sessionKey{conn: ev.GetConnectionId(), stream: ev.GetStreamId()})
	a.handleLocked(ev)
	w.after = r.GetSequence()
}
