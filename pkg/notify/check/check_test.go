package check

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// receiver is a DisconnectNotify implementation whose answers the test
// chooses.
type receiver struct {
	notifyv1.UnimplementedDisconnectNotifyServer
	answer func(ctx context.Context, req *notifyv1.NotifyRequest, seen map[string]bool) error

	mu   sync.Mutex
	seen map[string]bool // event ids received
	reqs []*notifyv1.NotifyRequest
}

func (r *receiver) Notify(ctx context.Context, req *notifyv1.NotifyRequest) (*notifyv1.NotifyResponse, error) {
	r.mu.Lock()
	seen := make(map[string]bool, len(r.seen))
	for id := range r.seen {
		seen[id] = true
	}
	for _, e := range req.GetEvents() {
		r.seen[e.GetEventId()] = true
	}
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	if r.answer != nil {
		if err := r.answer(ctx, req, seen); err != nil {
			return nil, err
		}
	}
	return &notifyv1.NotifyResponse{}, nil
}

// serve serves r (or no service at all when r is nil) on 127.0.0.1, with
// the server's opts, until the test ends.
func serve(t *testing.T, r *receiver, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer(opts...)
	if r != nil {
		r.seen = map[string]bool{}
		notifyv1.RegisterDisconnectNotifyServer(srv, r)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

func run(t *testing.T, target string, timeout time.Duration) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := Run(ctx, Options{Target: target, Timeout: timeout})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(results) != len(checks) {
		t.Fatalf("got %d results, want one per check (%d)", len(results), len(checks))
	}
	return results
}

func TestGoodReceiverPasses(t *testing.T) {
	r := &receiver{}
	results := run(t, serve(t, r), time.Second)
	for _, res := range results {
		if !res.Passed {
			t.Errorf("%s: failed: %s", res.Name, res.Message)
		}
	}
	if !Passed(results) {
		t.Error("Passed() = false, want true")
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	reasons := map[notifyv1.Reason]bool{}
	scopes := map[notifyv1.Scope]bool{}
	batches := map[string]int{}
	incarnations, connIncarnations := map[string]bool{}, map[string]bool{}
	for _, req := range r.reqs {
		var ids []string
		for _, e := range req.GetEvents() {
			reasons[e.GetReason()] = true
			scopes[e.GetScope()] = true
			ids = append(ids, e.GetEventId())
			if e.GetEventId() == "" || e.GetDetectedAt() == nil {
				t.Errorf("event lacks a field that is never empty: %v", e)
			}
			switch sidecar := e.GetScope() == notifyv1.Scope_SCOPE_SIDECAR; {
			case sidecar && (e.GetConnectionId() != "" || e.GetStreamId() != 0 || e.GetIncarnation() == ""):
				t.Errorf("SCOPE_SIDECAR event must name an incarnation and no connection or stream: %v", e)
			case sidecar:
				incarnations[e.GetIncarnation()] = true
			case e.GetConnectionId() == "":
				t.Errorf("event lacks a connection id: %v", e)
			default:
				connIncarnations[strings.SplitN(e.GetConnectionId(), "-", 2)[0]] = true
			}
		}
		batches[strings.Join(ids, ",")]++
	}
	if len(reasons) != len(notifyv1.Reason_name)-1 || reasons[notifyv1.Reason_REASON_UNSPECIFIED] {
		t.Errorf("reasons sent = %v, want every reason but UNSPECIFIED", reasons)
	}
	if len(scopes) != len(notifyv1.Scope_name)-1 || scopes[notifyv1.Scope_SCOPE_UNSPECIFIED] {
		t.Errorf("scopes sent = %v, want every scope but UNSPECIFIED", scopes)
	}
	if len(incarnations) != 1 {
		t.Errorf("incarnations named live = %v, want one (sent twice)", incarnations)
	}
	for inc := range incarnations {
		if connIncarnations[inc] {
			t.Errorf("incarnation %s was named live but also had a stream before: the check must name a new one", inc)
		}
	}
	repeated := 0
	for _, n := range batches {
		if n == 2 {
			repeated++
		}
	}
	if repeated != 1 {
		t.Errorf("%d batches were sent twice with the same ids, want 1 (the retry check)", repeated)
	}

	var out bytes.Buffer
	if err := Print(&out, results); err != nil {
		t.Fatalf("Print: %v", err)
	}
	if !strings.Contains(out.String(), "CHECK") || strings.Count(out.String(), "PASS") != len(checks) ||
		!strings.Contains(out.String(), fmt.Sprintf("%d of %d checks passed", len(checks), len(checks))) {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestBrokenReceiversFail(t *testing.T) {
	tests := []struct {
		name       string
		receiver   *receiver // nil: a grpc server without the service
		timeout    time.Duration
		wantFailed []string // names of the checks that must fail; the rest must pass
		wantMsg    string
	}{
		{
			name:       "unimplemented",
			receiver:   nil,
			wantFailed: checkNames(),
			wantMsg:    "does not implement hangup.notify.v1.DisconnectNotify",
		},
		{
			name: "internal errors",
			receiver: &receiver{answer: func(context.Context, *notifyv1.NotifyRequest, map[string]bool) error {
				return status.Error(codes.Internal, "database down")
			}},
			wantFailed: checkNames(),
			wantMsg:    "database down",
		},
		{
			name: "hangs",
			receiver: &receiver{answer: func(ctx context.Context, _ *notifyv1.NotifyRequest, _ map[string]bool) error {
				<-ctx.Done()
				return ctx.Err()
			}},
			timeout:    50 * time.Millisecond,
			wantFailed: checkNames(),
			wantMsg:    "no answer within 50ms",
		},
		{
			name: "rejects duplicates",
			receiver: &receiver{answer: func(_ context.Context, req *notifyv1.NotifyRequest, seen map[string]bool) error {
				for _, e := range req.GetEvents() {
					if seen[e.GetEventId()] {
						return status.Errorf(codes.AlreadyExists, "event %s already handled", e.GetEventId())
					}
				}
				return nil
			}},
			wantFailed: []string{"retried batch"},
			wantMsg:    "duplicates must be accepted",
		},
		{
			name: "rejects events without a connection",
			receiver: &receiver{answer: func(_ context.Context, req *notifyv1.NotifyRequest, _ map[string]bool) error {
				for _, e := range req.GetEvents() {
					if e.GetConnectionId() == "" {
						return status.Error(codes.InvalidArgument, "connection_id is required")
					}
				}
				return nil
			}},
			wantFailed: []string{"sidecar restart"},
			wantMsg:    "free every session whose connection id does not start with",
		},
		{
			name: "rejects large batches",
			receiver: &receiver{answer: func(_ context.Context, req *notifyv1.NotifyRequest, _ map[string]bool) error {
				if len(req.GetEvents()) > 5 {
					return status.Error(codes.InvalidArgument, "too many events")
				}
				return nil
			}},
			wantFailed: []string{"every reason", "full batch", "largest call"},
			wantMsg:    "too many events",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Second
			}
			results := run(t, serve(t, tt.receiver), timeout)
			wantFail := map[string]bool{}
			for _, n := range tt.wantFailed {
				wantFail[n] = true
			}
			for _, res := range results {
				if res.Passed == wantFail[res.Name] {
					t.Errorf("%s: passed = %v, want %v (%s)", res.Name, res.Passed, !wantFail[res.Name], res.Message)
				}
				if !res.Passed && !strings.Contains(res.Message, tt.wantMsg) {
					t.Errorf("%s: message %q lacks %q", res.Name, res.Message, tt.wantMsg)
				}
			}
			if Passed(results) {
				t.Error("Passed() = true, want false")
			}
			var out bytes.Buffer
			if err := Print(&out, results); err != nil {
				t.Fatalf("Print: %v", err)
			}
			if !strings.Contains(out.String(), "FAIL") {
				t.Errorf("table shows no FAIL:\n%s", out.String())
			}
		})
	}
}

// TestSmallReceiveLimitWarns: an app that accepts less than a sidecar's
// largest call passes every check, the largest call with a warning that
// says what is lost and what to raise.
func TestSmallReceiveLimitWarns(t *testing.T) {
	results := run(t, serve(t, &receiver{}, grpc.MaxRecvMsgSize(256<<10)), time.Second)
	for _, res := range results {
		switch {
		case !res.Passed:
			t.Errorf("%s: failed: %s", res.Name, res.Message)
		case res.Name == "largest call" && !res.Warning:
			t.Errorf("%s: passed without a warning: %s", res.Name, res.Message)
		case res.Name == "largest call":
			for _, want := range []string{"max receive message size", "without its request headers", "Raise the limit"} {
				if !strings.Contains(res.Message, want) {
					t.Errorf("%s: warning %q lacks %q", res.Name, res.Message, want)
				}
			}
		case res.Warning:
			t.Errorf("%s: warning: %s", res.Name, res.Message)
		}
	}
	if !Passed(results) {
		t.Error("Passed() = false, want true: a warning is not a failure")
	}
	var out bytes.Buffer
	if err := Print(&out, results); err != nil {
		t.Fatalf("Print: %v", err)
	}
	if !strings.Contains(out.String(), "WARN") || !strings.Contains(out.String(), fmt.Sprintf("%d of %d checks passed, 1 with a warning", len(checks), len(checks))) {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestUnreachableTargetFails(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, res := range run(t, addr, time.Second) {
		if res.Passed || !strings.Contains(res.Message, "cannot reach") {
			t.Errorf("%s: passed = %v, message %q; want a failure saying it cannot reach %s", res.Name, res.Passed, res.Message, addr)
		}
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no target", Options{}, "--target is required"},
		{"bad target", Options{Target: "localhost"}, `--target "localhost": want host:port`},
		{"bad timeout", Options{Target: "127.0.0.1:1", Timeout: time.Nanosecond}, "--timeout 1ns"},
		{"incarnation with a dash", Options{Target: "127.0.0.1:1", Incarnation: "ABC-1"}, `--incarnation "ABC-1"`},
		{"incarnation with a space", Options{Target: "127.0.0.1:1", Incarnation: "ABC 1"}, `--incarnation "ABC 1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestIncarnationOption: with --incarnation the restart check names the
// sidecar's own incarnation live, so that an app serving traffic through
// that sidecar keeps its sessions.
func TestIncarnationOption(t *testing.T) {
	r := &receiver{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := Run(ctx, Options{Target: serve(t, r), Incarnation: "LIVE0001"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !Passed(results) {
		t.Fatalf("checks failed: %+v", results)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	named := 0
	for _, req := range r.reqs {
		for _, e := range req.GetEvents() {
			if e.GetScope() != notifyv1.Scope_SCOPE_SIDECAR {
				continue
			}
			named++
			if e.GetIncarnation() != "LIVE0001" {
				t.Errorf("restart event names %q live, want the --incarnation LIVE0001", e.GetIncarnation())
			}
		}
	}
	if named != 2 {
		t.Errorf("%d restart events, want 2", named)
	}
}

func checkNames() []string {
	var names []string
	for _, c := range checks {
		names = append(names, c.name)
	}
	return names
}
