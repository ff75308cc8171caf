package polyglot

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

// notifyScenarios send the app the events the sidecar would, straight to its
// DisconnectNotify, for streams held through the sidecar: they check that
// the app keys its sessions on hangup's ids and frees them on the event
// alone, without the sidecar's reset of the app-side stream.
var notifyScenarios = []scenario{
	{name: "stream event sent twice", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		ctx, cancel := context.WithTimeout(t.Context(), holdTimeout)
		defer cancel()
		stream, u, err := subscribe(ctx, dial(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		requireHangupKey(t, u)
		waitSessions(t, app, base+1, holdTimeout)
		ev := event(notifyv1.Scope_SCOPE_STREAM, u.connectionID, u.streamID)
		// Delivery is at-least-once: the same event twice must be harmless.
		sendNotify(t, app, ev)
		sendNotify(t, app, ev)
		requireCallEnded(t, stream, cancel)
	}},
	{name: "connection event", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		ctx, cancel := context.WithTimeout(t.Context(), holdTimeout)
		defer cancel()
		conn := dial(t, addr)
		s1, u1, err := subscribe(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		s2, u2, err := subscribe(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		requireHangupKey(t, u1)
		if u1.connectionID != u2.connectionID || u1.streamID == u2.streamID {
			t.Fatalf("two streams of one connection have keys %s/%d and %s/%d, want one connection id and two stream ids",
				u1.connectionID, u1.streamID, u2.connectionID, u2.streamID)
		}
		waitSessions(t, app, base+2, holdTimeout)
		sendNotify(t, app, event(notifyv1.Scope_SCOPE_CONNECTION, u1.connectionID, 0))
		requireCallEnded(t, s1, cancel)
		requireCallEnded(t, s2, cancel)
	}},
	{name: "sidecar restart", bound: eventBound, disconnect: func(t *testing.T, addr string, app *runningApp, base int64) {
		ctx, cancel := context.WithTimeout(t.Context(), holdTimeout)
		defer cancel()
		// A stream through the running sidecar: its incarnation is live.
		live, lu, err := subscribe(ctx, dial(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		requireHangupKey(t, lu)
		inc, _, ok := strings.Cut(lu.connectionID, "-")
		if !ok || inc == "" {
			t.Fatalf("connection id %q does not start with an incarnation and a \"-\"", lu.connectionID)
		}
		// A stream the app holds for a sidecar process that died: the
		// headers a killed sidecar of another incarnation had added.
		oldCtx := metadata.AppendToOutgoingContext(ctx, "x-hangup-connection-id", "OLDINC00-1", "x-hangup-stream-id", "1")
		stale, su, err := subscribe(oldCtx, app.direct)
		if err != nil {
			t.Fatal(err)
		}
		if su.connectionID != "OLDINC00-1" {
			t.Fatalf("the app keyed the stale session as %q, want OLDINC00-1 from its headers", su.connectionID)
		}
		waitSessions(t, app, base+2, holdTimeout)

		// Sent at start-up and again on a reconnection: twice is harmless.
		sendNotify(t, app, restartEvent(inc))
		sendNotify(t, app, restartEvent(inc))
		requireCallEnded(t, stale, cancel)
		// The live incarnation's session stays.
		if n, err := sessions(ctx, app.direct); err != nil || n != base+1 {
			t.Fatalf("after the restart event the app holds %d sessions (%v), want %d: the live incarnation's must stay", n, err, base+1)
		}
		if err := live.CloseSend(); err != nil {
			t.Fatal(err)
		}
	}},
}

// restartEvent is what a sidecar process sends when it starts: inc is live.
func restartEvent(inc string) *notifyv1.DisconnectEvent {
	return &notifyv1.DisconnectEvent{
		EventId:     "polyglot-restart-" + inc,
		Scope:       notifyv1.Scope_SCOPE_SIDECAR,
		Reason:      notifyv1.Reason_REASON_SIDECAR_RESTART,
		Initiator:   notifyv1.Initiator_INITIATOR_SIDECAR,
		Incarnation: inc,
		DetectedAt:  timestamppb.Now(),
	}
}

// requireHangupKey fails unless the app keyed the session on the sidecar's
// headers rather than a local id.
func requireHangupKey(t *testing.T, u update) {
	t.Helper()
	if u.connectionID == "" || strings.HasPrefix(u.connectionID, "local-") || u.streamID == 0 {
		t.Fatalf("the app keyed the session as %q/%d, want the x-hangup-connection-id and x-hangup-stream-id the sidecar sent", u.connectionID, u.streamID)
	}
}

// requireCallEnded fails unless the app ends the freed call with an error
// status within eventBound. cancel ends the call's context; it is called on
// timeout so that the reader stops before requireCallEnded returns.
func requireCallEnded(t *testing.T, stream grpc.ClientStream, cancel context.CancelFunc) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := recvUpdate(stream); err != nil {
				done <- err
				return
			}
		}
	}()
	timer := time.NewTimer(eventBound)
	defer timer.Stop()
	select {
	case err := <-done:
		if errors.Is(err, io.EOF) {
			t.Fatalf("the freed call ended with OK, want an error status such as CANCELLED")
		}
		t.Logf("freed call ended: %v", status.Code(err))
	case <-timer.C:
		cancel()
		<-done
		t.Fatalf("the app did not end the freed call within %s", eventBound)
	}
}

func event(scope notifyv1.Scope, conn string, stream uint32) *notifyv1.DisconnectEvent {
	return &notifyv1.DisconnectEvent{
		EventId:      "polyglot-" + conn + "-" + scope.String(),
		Scope:        scope,
		Reason:       notifyv1.Reason_REASON_RST_STREAM,
		Initiator:    notifyv1.Initiator_INITIATOR_CLIENT,
		ConnectionId: conn,
		StreamId:     stream,
		DetectedAt:   timestamppb.Now(),
	}
}

// sendNotify calls the app's DisconnectNotify as the sidecar would.
func sendNotify(t *testing.T, app *runningApp, events ...*notifyv1.DisconnectEvent) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+app.notifyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("client for DisconnectNotify at %s: %v", app.notifyAddr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := notifyv1.NewDisconnectNotifyClient(conn).Notify(ctx, &notifyv1.NotifyRequest{Events: events}); err != nil {
		t.Fatalf("Notify at %s: %v", app.notifyAddr, err)
	}
}
