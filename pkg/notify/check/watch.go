package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
)

// Defaults of WatchOptions.
const (
	// DefaultConnectTimeout is how long the Watch checks wait for the app
	// to call (and call again): long enough for an app started after the
	// check and for grpc-go's first reconnect delays (1s, then 1.6s, ...).
	DefaultConnectTimeout = 30 * time.Second
	// DefaultSettle is how long the checks give the app to handle the
	// events they sent before ending the stream: the check cannot see the
	// app handle an event, only where it resumes.
	DefaultSettle = time.Second
)

// WatchOptions configures RunWatch: the check plays the sidecar's side of
// DisconnectWatch.Watch, and the app under test is its client.
type WatchOptions struct {
	// Listen is where the check serves Watch: the address the app's
	// watcher dials (its sidecar's --watch-addr), "host:port" or
	// "unix:///absolute/path". Required. Flag: --watch-listen.
	Listen string
	// ConnectTimeout bounds each wait for the app to call Watch. Default
	// DefaultConnectTimeout. Flag: --watch-timeout.
	ConnectTimeout time.Duration
	// Settle is how long the app gets to handle a burst of events before
	// the check ends its stream. Default DefaultSettle. Flag: --watch-settle.
	Settle time.Duration
}

// watchCall is one Watch call of the app, held open until end is closed.
type watchCall struct {
	req    *notifyv1.WatchRequest
	stream grpc.ServerStreamingServer[notifyv1.WatchResponse]
	end    chan struct{} // closed by the checker: the call returns UNAVAILABLE
}

// watchServer hands every Watch call to the checker.
type watchServer struct {
	notifyv1.UnimplementedDisconnectWatchServer
	calls chan *watchCall
}

func (s *watchServer) Watch(req *notifyv1.WatchRequest, stream grpc.ServerStreamingServer[notifyv1.WatchResponse]) error {
	c := &watchCall{req: req, stream: stream, end: make(chan struct{})}
	select {
	case s.calls <- c:
	case <-stream.Context().Done():
		return nil
	}
	select {
	case <-c.end:
		return status.Error(codes.Unavailable, "notify-check ends the stream to see where the watcher resumes")
	case <-stream.Context().Done():
		return nil
	}
}

// watchChecker runs the Watch checks in order against one app.
type watchChecker struct {
	opts  WatchOptions
	calls chan *watchCall
	cur   *watchCall // the call the last step left open
	inc   string     // the incarnation the check plays now
	last  uint64     // the last sequence sent in inc
}

// RunWatch serves Watch on opts.Listen, waits for the app under test to
// call it, and checks its client side from outside: that it resumes with
// the incarnation and sequence of the last event it got when its stream
// ends, that it moves past a gap the sidecar reports, and that it follows
// a new incarnation. Resuming a little early is accepted (events then come
// twice, and duplicates are allowed); resuming from the start, from
// nowhere or beyond what was sent is not. It returns an error only when the
// checks cannot run at all.
func RunWatch(ctx context.Context, opts WatchOptions) ([]Result, error) {
	if opts.Listen == "" {
		return nil, errors.New("notify-check: --watch-listen is required: host:port or unix:///path the app's watcher dials")
	}
	if err := notify.CheckAddr(opts.Listen); err != nil {
		return nil, fmt.Errorf("notify-check --watch-listen %w", err)
	}
	if opts.ConnectTimeout < 0 || opts.Settle < 0 {
		return nil, fmt.Errorf("notify-check --watch-timeout %s / --watch-settle %s: must not be negative", opts.ConnectTimeout, opts.Settle)
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	ln, err := watch.Listen(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("notify-check: %w", err)
	}
	return runWatchOn(ctx, ln, opts), nil
}

// runWatchOn is RunWatch on an open listener, which it closes.
func runWatchOn(ctx context.Context, ln net.Listener, opts WatchOptions) []Result {
	srv := &watchServer{calls: make(chan *watchCall)}
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectWatchServer(gs, srv)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(ln) }()
	defer func() { gs.Stop(); <-served }()

	c := &watchChecker{opts: opts, calls: srv.calls, inc: newIncarnation()}
	var results []Result
	for _, step := range watchChecks {
		start := time.Now()
		msg, err := step.run(ctx, c)
		r := Result{Name: step.name, Passed: err == nil, Message: msg, Elapsed: time.Since(start)}
		if err != nil {
			r.Message = err.Error()
		}
		results = append(results, r)
		if err != nil {
			break // later steps build on this one
		}
	}
	if c.cur != nil {
		close(c.cur.end)
	}
	return results
}

// next waits for the app's next Watch call.
func (c *watchChecker) next(ctx context.Context, after string) (*watchCall, error) {
	t := time.NewTimer(c.opts.ConnectTimeout)
	defer t.Stop()
	select {
	case call := <-c.calls:
		c.cur = call
		return call, nil
	case <-t.C:
		return nil, fmt.Errorf("the app did not call Watch on %s within %s %s", c.opts.Listen, c.opts.ConnectTimeout, after)
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// send sends events of the current incarnation with sequences from..to on
// the open call, the first with missedBefore.
func (c *watchChecker) send(from, to, missedBefore uint64) error {
	for seq := from; seq <= to; seq++ {
		ev := streamEvent(newConnIDOf(c.inc), uint32(2*seq+1), event.ReasonRSTStream)
		if seq == 1 {
			ev = incarnationEvent(c.inc)
		}
		ev.Incarnation = c.inc
		resp := &notifyv1.WatchResponse{Event: ev, Sequence: seq}
		if seq == from {
			resp.MissedBefore = missedBefore
		}
		if err := c.cur.stream.Send(resp); err != nil {
			return fmt.Errorf("send event %d: the app's watcher went away: %w", seq, err)
		}
		c.last = max(c.last, seq)
	}
	return nil
}

// endAndResume lets the app handle what was sent, ends the stream and
// waits for the app to call again.
func (c *watchChecker) endAndResume(ctx context.Context) (*notifyv1.WatchRequest, error) {
	t := time.NewTimer(c.opts.Settle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return nil, context.Cause(ctx)
	}
	close(c.cur.end)
	c.cur = nil
	call, err := c.next(ctx, "after its stream ended with UNAVAILABLE: a watcher must reconnect (with a backoff)")
	if err != nil {
		return nil, err
	}
	return call.req, nil
}

// checkResume checks that req resumes in the current incarnation no later
// than the last event sent and no earlier than floor.
func (c *watchChecker) checkResume(req *notifyv1.WatchRequest, floor uint64) (string, error) {
	got := fmt.Sprintf("incarnation %q after_sequence %d", req.GetIncarnation(), req.GetAfterSequence())
	want := fmt.Sprintf("incarnation %q and after_sequence %d (the last event's), or a little less", c.inc, c.last)
	switch {
	case req.GetIncarnation() != c.inc:
		return "", fmt.Errorf("resumed with %s; want %s: take the incarnation from the events (event.incarnation) and send it back", got, want)
	case req.GetAfterSequence() > c.last:
		return "", fmt.Errorf("resumed with %s, beyond the last event sent (%d); the sidecar answers INVALID_ARGUMENT", got, c.last)
	case req.GetAfterSequence() < floor:
		return "", fmt.Errorf("resumed with %s; want %s: send back the sequence of the last event handled, or every event comes again", got, want)
	}
	msg := "resumed with " + got
	if d := c.last - req.GetAfterSequence(); d > 0 {
		msg += fmt.Sprintf(" (%d events will come again: duplicates are allowed)", d)
	}
	return msg, nil
}

type watchCheck struct {
	name string
	run  func(ctx context.Context, c *watchChecker) (string, error)
}

// burst is how many stream events a step sends.
const burst = 5

var watchChecks = []watchCheck{
	{"watch: connects", func(ctx context.Context, c *watchChecker) (string, error) {
		call, err := c.next(ctx, "(start the app with its watcher pointed there)")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("called with incarnation %q after_sequence %d", call.req.GetIncarnation(), call.req.GetAfterSequence()), nil
	}},
	{"watch: resumes where it was", func(ctx context.Context, c *watchChecker) (string, error) {
		// A sidecar the app has never seen starts at its first event.
		if err := c.send(1, 1+burst, 0); err != nil {
			return "", err
		}
		req, err := c.endAndResume(ctx)
		if err != nil {
			return "", err
		}
		return c.checkResume(req, 1)
	}},
	{"watch: moves past a gap", func(ctx context.Context, c *watchChecker) (string, error) {
		// Send again what the app asked for, then a hole of 2 that the
		// sidecar's buffer no longer held, reported in missed_before.
		from := c.cur.req.GetAfterSequence() + 1
		floor := c.last
		if err := c.send(from, c.last, 0); err != nil {
			return "", err
		}
		gapAt := c.last + 3
		if err := c.send(gapAt, gapAt+1, 2); err != nil {
			return "", err
		}
		req, err := c.endAndResume(ctx)
		if err != nil {
			return "", err
		}
		msg, err := c.checkResume(req, floor)
		if err != nil {
			return "", err
		}
		if req.GetAfterSequence() < gapAt {
			return "", fmt.Errorf("%s: still before the gap at %d; handle the events after it (missed_before %d says the ones before are gone) and resume after them", msg, gapAt, 2)
		}
		return msg + ", past the reported gap", nil
	}},
	{"watch: follows a sidecar restart", func(ctx context.Context, c *watchChecker) (string, error) {
		// The app's sidecar was replaced: a new incarnation answers
		// from its own first event, whatever the app asked for.
		old := c.inc
		c.inc, c.last = newIncarnation(), 0
		if err := c.send(1, 1+burst, 0); err != nil {
			return "", err
		}
		req, err := c.endAndResume(ctx)
		if err != nil {
			return "", err
		}
		msg, err := c.checkResume(req, 1)
		if err != nil {
			return "", fmt.Errorf("after incarnation %s replaced %s: %w", c.inc, old, err)
		}
		return msg + " of the new incarnation", nil
	}},
}
