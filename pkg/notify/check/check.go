// Package check is the logic of `sidecar notify-check --target ADDR`: a
// conformance check for anyone implementing hangup.notify.v1.DisconnectNotify
// in their own language. It sends the kinds of batches the sidecar sends and
// checks that each is acknowledged with OK in time.
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
)

// DefaultTimeout bounds each check's call, as notify.DefaultTimeout bounds
// the sidecar's.
const DefaultTimeout = notify.DefaultTimeout

// Options configures Run.
type Options struct {
	// Target is the DisconnectNotify server: "host:port" or
	// "unix:///absolute/path". Required. Flag: --target.
	Target string
	// Timeout bounds each Notify call. Default DefaultTimeout (2s), minimum
	// 1ms. Flag: --timeout.
	Timeout time.Duration
	// Incarnation is the incarnation of the sidecar in front of the target
	// (its start-up log line names it), for the "sidecar restart" check to
	// name live. Empty: the check names a new incarnation live, and the app
	// frees every session its sidecar relayed, so leave it empty only for
	// an app that serves no traffic. Flag: --incarnation.
	Incarnation string
}

// Result is the outcome of one named check.
type Result struct {
	Name    string        // what was checked, e.g. "single stream event"
	Passed  bool          // the target answered every call of the check with OK in time
	Warning bool          // passed, but the target will lose detail the sidecar sends: Message says what to change
	Message string        // what happened; on failure or warning, what to fix
	Elapsed time.Duration // time the check took
}

// Run runs every check against opts.Target, in order, and returns their
// results. It returns an error only when the checks cannot run at all (bad
// options); an unreachable or wrong target gives failed results.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if opts.Target == "" {
		return nil, errors.New("notify-check: --target is required: host:port or unix:///path of the DisconnectNotify server")
	}
	if err := notify.CheckAddr(opts.Target); err != nil {
		return nil, fmt.Errorf("notify-check --target %w", err)
	}
	if opts.Timeout != 0 && opts.Timeout < time.Millisecond {
		return nil, fmt.Errorf("notify-check --timeout %s: must be at least 1ms", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Incarnation != "" && (strings.Contains(opts.Incarnation, "-") || strings.TrimFunc(opts.Incarnation, isAlnum) != "") {
		return nil, fmt.Errorf("notify-check --incarnation %q: want the letters and digits the sidecar logs as incarnation, without \"-\"", opts.Incarnation)
	}
	target := opts.Target
	if !strings.HasPrefix(target, "unix://") {
		target = "passthrough:///" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("notify-check: client for %s: %w", opts.Target, err)
	}
	defer conn.Close()
	c := &checker{client: notifyv1.NewDisconnectNotifyClient(conn), timeout: opts.Timeout, target: opts.Target, live: opts.Incarnation}

	var results []Result
	for _, ch := range checks {
		start := time.Now()
		msg, err := ch.run(ctx, c)
		r := Result{Name: ch.name, Passed: err == nil, Message: msg, Elapsed: time.Since(start)}
		var w warning
		if errors.As(err, &w) {
			r.Passed, r.Warning = true, true
		}
		if err != nil {
			r.Message = err.Error()
		}
		results = append(results, r)
	}
	return results, nil
}

// Passed reports whether every result passed.
func Passed(results []Result) bool {
	for _, r := range results {
		if !r.Passed {
			return false
		}
	}
	return len(results) > 0
}

// Print writes results as a table and a summary line.
func Print(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tTIME\tDETAIL")
	passed, warned := 0, 0
	for _, r := range results {
		res := "FAIL"
		if r.Passed {
			res = "PASS"
			passed++
		}
		if r.Warning {
			res = "WARN"
			warned++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, res, r.Elapsed.Round(10*time.Microsecond), r.Message)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print check results: %w", err)
	}
	summary := fmt.Sprintf("%d of %d checks passed", passed, len(results))
	if warned > 0 {
		summary += fmt.Sprintf(", %d with a warning", warned)
	}
	if _, err := fmt.Fprintln(w, summary); err != nil {
		return fmt.Errorf("print check results: %w", err)
	}
	return nil
}

type checker struct {
	client  notifyv1.DisconnectNotifyClient
	timeout time.Duration
	target  string
	live    string // Options.Incarnation
}

// notify sends one batch and explains a failure in terms of what the
// implementer must change.
func (c *checker) notify(ctx context.Context, evs []*notifyv1.DisconnectEvent) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.client.Notify(ctx, &notifyv1.NotifyRequest{Events: evs})
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.Unimplemented:
		return fmt.Errorf("%s does not implement hangup.notify.v1.DisconnectNotify/Notify (register the service on the server): %w", c.target, err)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer within %s: Notify must return promptly and free resources asynchronously: %w", c.timeout, err)
	case codes.Unavailable:
		return fmt.Errorf("cannot reach %s (is the app listening there, plaintext h2c?): %w", c.target, err)
	}
	return fmt.Errorf("the call with %d events did not return OK; the sidecar would retry this batch until its queue overflows: %w", len(evs), err)
}

// warning is a check's outcome when the target answered as the sidecar
// can live with, at a cost to the app that it should fix.
type warning struct{ msg string }

func (w warning) Error() string { return w.msg }

type check struct {
	name string
	run  func(ctx context.Context, c *checker) (string, error)
}

var checks = []check{
	{"single stream event", func(ctx context.Context, c *checker) (string, error) {
		ev := streamEvent(newConnID(), 1, event.ReasonRSTStream)
		if err := c.notify(ctx, []*notifyv1.DisconnectEvent{ev}); err != nil {
			return "", err
		}
		return "one RST_STREAM event acknowledged", nil
	}},
	{"batch with both scopes", func(ctx context.Context, c *checker) (string, error) {
		conn := newConnID()
		evs := []*notifyv1.DisconnectEvent{
			streamEvent(conn, 1, event.ReasonConnectionReset),
			streamEvent(conn, 3, event.ReasonConnectionReset),
			streamEvent(conn, 5, event.ReasonConnectionReset),
			connectionEvent(conn, event.ReasonConnectionReset),
		}
		if err := c.notify(ctx, evs); err != nil {
			return "", err
		}
		return "3 stream events and their connection event acknowledged", nil
	}},
	{"every reason", func(ctx context.Context, c *checker) (string, error) {
		conn := newConnID()
		var evs []*notifyv1.DisconnectEvent
		for r := event.ReasonRSTStream; r <= event.ReasonShutdown; r++ {
			evs = append(evs, streamEvent(conn, uint32(2*r+1), r))
		}
		if err := c.notify(ctx, evs); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d events, one per reason, acknowledged", len(evs)), nil
	}},
	{"resumed session", func(ctx context.Context, c *checker) (string, error) {
		// Reconnect grace: a lost stream's session came back on another
		// connection; a receiver that predates the reason must still
		// acknowledge it.
		ev := streamEvent(newConnID(), 1, event.ReasonResumed)
		if err := c.notify(ctx, []*notifyv1.DisconnectEvent{ev}); err != nil {
			return "", err
		}
		return "REASON_RESUMED naming the new stream acknowledged", nil
	}},
	{"minimal event", func(ctx context.Context, c *checker) (string, error) {
		// Only the fields that are never empty: optional ones unset.
		ev := &notifyv1.DisconnectEvent{
			EventId:      event.NewEventID(),
			Scope:        notifyv1.Scope_SCOPE_CONNECTION,
			Reason:       notifyv1.Reason_REASON_KEEPALIVE_TIMEOUT,
			ConnectionId: newConnID(),
			DetectedAt:   timestamppb.Now(),
		}
		if err := c.notify(ctx, []*notifyv1.DisconnectEvent{ev}); err != nil {
			return "", err
		}
		return "an event with optional fields unset acknowledged", nil
	}},
	{"full batch", func(ctx context.Context, c *checker) (string, error) {
		conn := newConnID()
		var evs []*notifyv1.DisconnectEvent
		for i := range notify.DefaultBatchMax {
			evs = append(evs, streamEvent(conn, uint32(2*i+1), event.ReasonGoAway))
		}
		if err := c.notify(ctx, evs); err != nil {
			return "", err
		}
		return fmt.Sprintf("a batch of %d events (the sidecar's default maximum) acknowledged", len(evs)), nil
	}},
	{"largest call", func(ctx context.Context, c *checker) (string, error) {
		// Events carry the allow-listed request headers, and a call
		// carries up to notify.MaxCallBytes of them.
		evs := largestBatch(newConnID())
		size := proto.Size(&notifyv1.NotifyRequest{Events: evs})
		err := c.notify(ctx, evs)
		if notify.TooLarge(err) {
			return "", warning{fmt.Sprintf("the app refused a call of %d bytes as too large: its max receive message size is below the %d bytes "+
				"a sidecar's call may carry. The sidecar then sends smaller calls, and an event too large on its own goes without its request "+
				"headers (marked %s) or is dropped. Raise the limit to at least 1 MiB plus the largest headers --notify-headers allows "+
				"(grpc's default 4 MiB is enough): %v", size, notify.MaxCallBytes, notify.HeadersDroppedKey, err)}
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d events with large request headers, %d bytes in one call, acknowledged", len(evs), size), nil
	}},
	{"retried batch", func(ctx context.Context, c *checker) (string, error) {
		conn := newConnID()
		evs := []*notifyv1.DisconnectEvent{
			streamEvent(conn, 1, event.ReasonKeepaliveTimeout),
			connectionEvent(conn, event.ReasonKeepaliveTimeout),
		}
		if err := c.notify(ctx, evs); err != nil {
			return "", fmt.Errorf("first delivery: %w", err)
		}
		if err := c.notify(ctx, evs); err != nil {
			return "", fmt.Errorf("the same batch again (same event ids; delivery is at-least-once, so duplicates must be accepted): %w", err)
		}
		return "the same event ids sent twice, both acknowledged", nil
	}},
	{"sidecar restart", func(ctx context.Context, c *checker) (string, error) {
		// A stream of one sidecar process, then the event a new process
		// sends when it starts, and again when its channel reconnects.
		old, live := newIncarnation(), c.live
		if live == "" {
			live = newIncarnation()
		}
		ev := streamEvent(newConnIDOf(old), 1, event.ReasonRSTStream)
		ev.Incarnation = old
		if err := c.notify(ctx, []*notifyv1.DisconnectEvent{ev}); err != nil {
			return "", fmt.Errorf("a stream event of incarnation %s: %w", old, err)
		}
		for _, when := range []string{"at start-up", "again after a reconnection"} {
			if err := c.notify(ctx, []*notifyv1.DisconnectEvent{incarnationEvent(live)}); err != nil {
				return "", fmt.Errorf("SCOPE_SIDECAR REASON_SIDECAR_RESTART naming incarnation %s %s (connection_id empty, stream_id 0; "+
					"free every session whose connection id does not start with %q): %w", live, when, live+"-", err)
			}
		}
		msg := fmt.Sprintf("incarnation %s named live twice after a stream of %s, both acknowledged", live, old)
		if c.live == "" {
			msg += " (a new incarnation: without --incarnation the app frees what its sidecar relayed)"
		}
		return msg, nil
	}},
}

func isAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
}

// newIncarnation returns an incarnation for the events of one check, in the
// sidecar's form: 8 letters and digits, no "-".
func newIncarnation() string { return strings.ToUpper(event.NewEventID()[24:]) }

// newConnID returns a connection id of a fresh incarnation.
func newConnID() string { return newConnIDOf(newIncarnation()) }

// newConnIDOf returns a connection id of incarnation inc, as the relay
// makes them: "<incarnation>-<n>".
func newConnIDOf(inc string) string { return inc + "-" + event.NewEventID()[26:] }

// incarnationEvent is the event a sidecar process sends to name itself live.
func incarnationEvent(inc string) *notifyv1.DisconnectEvent {
	return notify.ToProto(event.Event{
		ID:          event.NewEventID(),
		Scope:       event.ScopeSidecar,
		Reason:      event.ReasonSidecarRestart,
		Initiator:   event.InitiatorSidecar,
		DetectedAt:  time.Now(),
		Incarnation: inc,
	})
}

func streamEvent(conn string, stream uint32, r event.Reason) *notifyv1.DisconnectEvent {
	now := time.Now()
	ev := event.Event{
		ID:              event.NewEventID(),
		Scope:           event.ScopeStream,
		Reason:          r,
		Initiator:       initiator(r),
		ConnectionID:    conn,
		StreamID:        stream,
		Method:          "/hangup.check.v1.Check/Stream",
		Authority:       "notify-check.invalid",
		Headers:         map[string]string{"x-notify-check": "1"},
		PeerAddress:     "192.0.2.1:40000",
		StartedAt:       now.Add(-time.Minute),
		DetectedAt:      now,
		TraceID:         "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:          "00f067aa0ba902b7",
		BytesFromClient: 123,
		BytesToClient:   4567,
	}
	switch r {
	case event.ReasonRSTStream:
		ev.HTTP2ErrorCode = 8 // CANCEL
	case event.ReasonGoAway:
		ev.GoAwayDebug = "client going away"
	case event.ReasonPingAbuse:
		ev.HTTP2ErrorCode = 11 // ENHANCE_YOUR_CALM
		ev.GoAwayDebug = "too_many_pings"
	case event.ReasonProtocolError:
		ev.HTTP2ErrorCode = 1 // PROTOCOL_ERROR
	case event.ReasonResumed:
		ev.SessionKey = "notify-check-session"
		ev.ResumedConnectionID, ev.ResumedStreamID, ev.ResumedAt = newConnID(), 1, now
	}
	return notify.ToProto(ev)
}

func connectionEvent(conn string, r event.Reason) *notifyv1.DisconnectEvent {
	now := time.Now()
	return notify.ToProto(event.Event{
		ID:           event.NewEventID(),
		Scope:        event.ScopeConnection,
		Reason:       r,
		Initiator:    initiator(r),
		ConnectionID: conn,
		PeerAddress:  "192.0.2.1:40000",
		StartedAt:    now.Add(-time.Hour),
		DetectedAt:   now,
	})
}

// largestBatch is stream events of conn whose request headers make the
// call as large as a sidecar's may be (notify.MaxCallBytes) without going
// over.
func largestBatch(conn string) []*notifyv1.DisconnectEvent {
	const padding = 64 << 10 // per event
	var evs []*notifyv1.DisconnectEvent
	for i := 0; ; i++ {
		ev := streamEvent(conn, uint32(2*i+1), event.ReasonRSTStream)
		ev.Headers = map[string]string{"x-notify-check-padding": strings.Repeat("p", padding)}
		if proto.Size(&notifyv1.NotifyRequest{Events: append(evs, ev)}) > notify.MaxCallBytes {
			return evs
		}
		evs = append(evs, ev)
	}
}

func initiator(r event.Reason) event.Initiator {
	switch r {
	case event.ReasonRSTStream, event.ReasonGoAway, event.ReasonConnectionClosed, event.ReasonConnectionReset, event.ReasonResumed:
		return event.InitiatorClient
	}
	return event.InitiatorSidecar
}
