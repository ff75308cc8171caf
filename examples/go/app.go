package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
)

// sessionKey names a stream the way hangup does: the request headers
// x-hangup-connection-id and x-hangup-stream-id, the same values as a
// DisconnectEvent's connection_id and stream_id.
type sessionKey struct {
	conn   string
	stream uint32
}

// incarnation returns the sidecar process that relayed the stream: the
// connection id up to its first "-" ("<incarnation>-<n>"), or "" for a
// stream that did not come through hangup.
func (k sessionKey) incarnation() string {
	inc, _, ok := strings.Cut(k.conn, "-")
	if !ok || strings.HasPrefix(k.conn, localPrefix) {
		return ""
	}
	return inc
}

// localPrefix starts the keys of streams that did not come through hangup.
const localPrefix = "local-"

func (k sessionKey) String() string { return fmt.Sprintf("%s/%d", k.conn, k.stream) }

// session is the per-stream state the app must not leak.
type session struct {
	out  chan *chatv1.ChatResponse // room messages for this member; full means it misses some
	gone chan struct{}             // closed by whoever removes the session from the map
}

// app implements both the chat service and DisconnectNotify.
type app struct {
	chatv1.UnimplementedChatServiceServer
	notifyv1.UnimplementedDisconnectNotifyServer
	log *slog.Logger

	wg       sync.WaitGroup // receive goroutines of Chat calls
	localIDs atomic.Uint64  // keys for streams that did not come through hangup
	handled  atomic.Uint64  // events handled, pushed or watched (for tests)

	mu       sync.Mutex
	sessions map[sessionKey]*session
}

func newApp(log *slog.Logger) *app {
	return &app{log: log, sessions: map[sessionKey]*session{}}
}

// wait waits for the receive goroutines; call it after the servers stopped.
func (a *app) wait() { a.wg.Wait() }

// Chat joins the room until the client leaves, the stream ends or hangup
// reports the client gone, whichever comes first.
func (a *app) Chat(stream chatv1.ChatService_ChatServer) error {
	ctx := stream.Context()
	key := a.keyOf(ctx)
	s := &session{out: make(chan *chatv1.ChatResponse, 16), gone: make(chan struct{})}
	a.mu.Lock()
	a.sessions[key] = s
	a.mu.Unlock()
	defer a.remove(key, s)

	texts := make(chan string)
	a.wg.Add(1)
	go func() {
		// Ends when the client half-closes, or when the stream's context is
		// cancelled after Chat returns.
		defer a.wg.Done()
		defer close(texts)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case texts <- m.GetText():
			case <-ctx.Done():
				return
			}
		}
	}()

	for {
		select {
		case text, ok := <-texts:
			if !ok {
				return nil
			}
			a.broadcast(&chatv1.ChatResponse{From: key.String(), Text: text})
		case m := <-s.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-s.gone:
			return status.Error(codes.Canceled, "hangup reported the client gone")
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// Sessions reports how many sessions the app holds.
func (a *app) Sessions(context.Context, *chatv1.SessionsRequest) (*chatv1.SessionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &chatv1.SessionsResponse{Sessions: int64(len(a.sessions))}, nil
}

// Notify frees the sessions the events name. It is idempotent: an event for
// a session already gone (a retry, or a stream that ended normally first)
// changes nothing. It only unlinks state and returns at once, so that the
// sidecar's call never waits on the app's cleanup.
func (a *app) Notify(_ context.Context, req *notifyv1.NotifyRequest) (*notifyv1.NotifyResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range req.GetEvents() {
		a.handleLocked(ev)
	}
	return &notifyv1.NotifyResponse{}, nil
}

// handleLocked frees what one event names, whether it was pushed (Notify)
// or pulled (Watch).
func (a *app) handleLocked(ev *notifyv1.DisconnectEvent) {
	a.handled.Add(1)
	if ev.GetScope() == notifyv1.Scope_SCOPE_SIDECAR {
		a.freeOtherIncarnationsLocked(ev)
		return
	}
	for key, s := range a.sessions {
		if key.conn != ev.GetConnectionId() ||
			(ev.GetScope() == notifyv1.Scope_SCOPE_STREAM && key.stream != ev.GetStreamId()) {
			continue
		}
		delete(a.sessions, key)
		close(s.gone)
		a.log.Info("freed session", "session", key, "reason", ev.GetReason(), "event_id", ev.GetEventId())
	}
}

// freeOtherIncarnationsLocked handles the event a sidecar process sends
// when it starts (or reconnects): ev.incarnation is live, so every session
// relayed by another incarnation belongs to a process that died without
// reporting it. Sessions of the live one, and those that did not come
// through hangup, stay.
func (a *app) freeOtherIncarnationsLocked(ev *notifyv1.DisconnectEvent) {
	a.freeAllButLocked(ev.GetIncarnation(), ev.GetEventId())
}

// freeAllButLocked frees every session relayed by an incarnation other
// than live.
func (a *app) freeAllButLocked(live, why string) {
	if live == "" {
		return // not a sidecar restart event this app understands
	}
	for key, s := range a.sessions {
		if inc := key.incarnation(); inc == "" || inc == live {
			continue
		}
		delete(a.sessions, key)
		close(s.gone)
		a.log.Info("freed session of a sidecar that is gone", "session", key, "live_incarnation", live, "event_id", why)
	}
}

func (a *app) remove(key sessionKey, s *session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessions[key] == s {
		delete(a.sessions, key)
		close(s.gone)
	}
}

func (a *app) broadcast(m *chatv1.ChatResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.sessions {
		select {
		case s.out <- m:
		default: // a slow member misses messages rather than stall the room
		}
	}
}

// keyOf reads the session key from the headers hangup adds. A stream that did
// not come through hangup gets a local key that no event will ever name.
func (a *app) keyOf(ctx context.Context) sessionKey {
	md, _ := metadata.FromIncomingContext(ctx)
	conn := first(md, "x-hangup-connection-id")
	stream, err := strconv.ParseUint(first(md, "x-hangup-stream-id"), 10, 32)
	if conn == "" || err != nil {
		a.log.Warn("stream without x-hangup-* headers: not behind hangup, disconnects will not be reported")
		return sessionKey{conn: fmt.Sprintf("%s%d", localPrefix, a.localIDs.Add(1))}
	}
	return sessionKey{conn: conn, stream: uint32(stream)}
}

func first(md metadata.MD, name string) string {
	if v := md.Get(name); len(v) > 0 {
		return v[0]
	}
	return ""
}
