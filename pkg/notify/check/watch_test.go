package check

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

// resumeFunc decides what a test watcher sends on its next call, from the
// position it tracked (the last event it got) and its first call's.
type resumeFunc func(inc string, after uint64) *notifyv1.WatchRequest

// track is how a watcher should keep its position: the incarnation and
// sequence of the last event it got, whatever the sequence jumped over.
type track func(inc *string, after *uint64, r *notifyv1.WatchResponse)

func trackAll(inc *string, after *uint64, r *notifyv1.WatchResponse) {
	*inc, *after = r.GetEvent().GetIncarnation(), r.GetSequence()
}

// runWatcher is an app's watcher written with grpc-go: it calls Watch at
// addr again each time its stream ends, until ctx ends. The returned
// function waits for it to stop.
func runWatcher(t *testing.T, ctx context.Context, addr string, resume resumeFunc, tr track) (wait func()) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := notifyv1.NewDisconnectWatchClient(cc)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cc.Close()
		var inc string
		var after uint64
		for ctx.Err() == nil {
			stream, err := client.Watch(ctx, resume(inc, after), grpc.WaitForReady(true))
			if err != nil {
				continue
			}
			for {
				r, err := stream.Recv()
				if err != nil {
					break
				}
				tr(&inc, &after, r)
			}
		}
	}()
	return wg.Wait
}

func TestRunWatch(t *testing.T) {
	tests := []struct {
		name     string
		resume   resumeFunc
		track    track
		failedAt string // the first failing check; "" when all pass
		why      string // in its message
	}{
		{name: "resumes after the last event", track: trackAll,
			resume: func(inc string, after uint64) *notifyv1.WatchRequest {
				return &notifyv1.WatchRequest{Incarnation: inc, AfterSequence: after}
			}},
		{name: "always from the start", track: trackAll,
			resume:   func(string, uint64) *notifyv1.WatchRequest { return &notifyv1.WatchRequest{} },
			failedAt: "watch: resumes where it was", why: "take the incarnation from the events"},
		{name: "keeps its first incarnation", track: func(inc *string, after *uint64, r *notifyv1.WatchResponse) {
			if *inc == "" {
				*inc = r.GetEvent().GetIncarnation()
			}
			*after = r.GetSequence()
		}, resume: func(inc string, after uint64) *notifyv1.WatchRequest {
			return &notifyv1.WatchRequest{Incarnation: inc, AfterSequence: after}
		}, failedAt: "watch: follows a sidecar restart", why: "take the incarnation from the events"},
		{name: "waits for the events of a gap", track: func(inc *string, after *uint64, r *notifyv1.WatchResponse) {
			if r.GetSequence() == *after+1 || r.GetEvent().GetIncarnation() != *inc {
				*inc, *after = r.GetEvent().GetIncarnation(), r.GetSequence()
			}
		}, resume: func(inc string, after uint64) *notifyv1.WatchRequest {
			return &notifyv1.WatchRequest{Incarnation: inc, AfterSequence: after}
		}, failedAt: "watch: moves past a gap", why: "still before the gap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			wait := runWatcher(t, ctx, ln.Addr().String(), tt.resume, tt.track)
			results := runWatchOn(ctx, ln, WatchOptions{Listen: ln.Addr().String(), ConnectTimeout: 10 * time.Second, Settle: 300 * time.Millisecond})
			cancel()
			wait()
			var failed *Result
			for i := range results {
				if !results[i].Passed {
					failed = &results[i]
					break
				}
			}
			switch {
			case tt.failedAt == "" && (failed != nil || len(results) != len(watchChecks)):
				t.Fatalf("a good watcher failed: %+v", results)
			case tt.failedAt != "" && failed == nil:
				t.Fatalf("a watcher that %s passed every check: %+v", tt.name, results)
			case tt.failedAt != "" && (failed.Name != tt.failedAt || !strings.Contains(failed.Message, tt.why)):
				t.Fatalf("first failure %q: %s; want %q saying %q", failed.Name, failed.Message, tt.failedAt, tt.why)
			}
		})
	}
}

func TestRunWatchNobodyCalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	results := runWatchOn(context.Background(), ln, WatchOptions{Listen: ln.Addr().String(), ConnectTimeout: 50 * time.Millisecond, Settle: time.Millisecond})
	if len(results) != 1 || results[0].Passed || !strings.Contains(results[0].Message, "did not call Watch") {
		t.Fatalf("results %+v, want one failure saying the app did not call Watch", results)
	}
}

func TestRunWatchOptions(t *testing.T) {
	tests := []struct {
		name string
		opts WatchOptions
		want string
	}{
		{name: "no address", opts: WatchOptions{}, want: "--watch-listen is required"},
		{name: "bad address", opts: WatchOptions{Listen: "nowhere"}, want: "--watch-listen"},
		{name: "negative settle", opts: WatchOptions{Listen: "127.0.0.1:1", Settle: -1}, want: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunWatch(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunWatch(%+v) = %v, want an error saying %q", tt.opts, err, tt.want)
			}
		})
	}
}
