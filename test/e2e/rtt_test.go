package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

// within reports whether got is within 10% of want.
func within(got, want time.Duration) bool {
	d := got - want
	if d < 0 {
		d = -d
	}
	return d <= want/10
}

// rttHeader returns the x-hangup-rtt-us the app got on call, which must
// be one value (the sidecar's, never the client's), in whole microseconds.
func rttHeader(t *testing.T, call demoapp.Call) time.Duration {
	t.Helper()
	vals := call.Metadata.Get("x-hangup-rtt-us")
	if len(vals) != 1 {
		t.Fatalf("the app got x-hangup-rtt-us %q, want one value (the sidecar's, not the client's)", vals)
	}
	us, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil || us < 0 {
		t.Fatalf("x-hangup-rtt-us %q: want whole microseconds (%v)", vals[0], err)
	}
	return time.Duration(us) * time.Microsecond
}

// answeredStream opens a FullDuplex stream and waits for the app's first
// answer on it; it ends when ctx does.
func answeredStream(t *testing.T, ctx context.Context, client testgrpc.TestServiceClient) {
	t.Helper()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
}

// TestRTTThroughADelayedPath: a grpc-go client reaches the built sidecar
// through a relay on 127.0.0.1 that holds every byte back 20 ms each way.
// The smallest RTT the sidecar measured from its own PINGs (one after the
// preface, then one a second with --rtt-interval; five or more) is 40 ms
// within 10%, in the disconnect event read over Watch; the grpc-go app
// sees the smoothed RTT in x-hangup-rtt-us (--rtt-header) move as samples
// come in. The
// minimum is what is held to 10%: on a loaded machine a sample can only
// come out longer than the path, never shorter. The push receiver is the
// one generated from the first contract: it receives the same event, the
// new fields unknown to it.
func TestRTTThroughADelayedPath(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	const rtt = 2 * oneWay
	app, appAddr := startApp(t)
	old := startOldReceiver(t)
	watchAddr := testtools.FreeAddr(t)
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", old.addr, "--watch-addr", watchAddr,
		"--rtt-header", "--rtt-interval", "1s")
	w := startWatch(t, watchAddr, "", 0)
	w.next(t) // the SCOPE_SIDECAR event

	dl := testtools.NewDelayLine(listen(t, "127.0.0.1:0"), sc.Addr, oneWay)
	t.Cleanup(func() { _ = dl.Close() })
	client := grpcClient(t, dl.Addr())
	ctx := ctxT(t, 30*time.Second)

	// The stream whose cancellation makes the event, open from the start.
	sctx, cancel := context.WithCancel(ctx)
	answeredStream(t, sctx, client)

	// Calls carry the smoothed RTT from the first sample on (the PING
	// after the preface, answered before the stream's first response).
	// Each new sample moves it: call until it has moved four times, so
	// that the event's minimum is over at least five samples.
	forged := metadata.AppendToOutgoingContext(ctx, "x-hangup-rtt-us", "1")
	var seen []time.Duration
	for len(seen) < 5 {
		if _, err := client.EmptyCall(forged, &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
		call := waitCall(t, app, 10*time.Second)
		if call.Method != "/grpc.testing.TestService/EmptyCall" {
			continue
		}
		if h := rttHeader(t, call); len(seen) == 0 || h != seen[len(seen)-1] {
			seen = append(seen, h)
		}
	}
	t.Logf("x-hangup-rtt-us the app saw: %v (the path adds %s)", seen, rtt)
	cancel()

	ev := w.next(t).GetEvent()
	if ev.GetScope() != notifyv1.Scope_SCOPE_STREAM || ev.GetReason() != notifyv1.Reason_REASON_RST_STREAM {
		t.Fatalf("watched %v %v, want the stream the client cancelled", ev.GetScope(), ev.GetReason())
	}
	if ev.GetRttLast() == nil || ev.GetRttMin() == nil || ev.GetRttSmoothed() == nil {
		t.Fatalf("event %s: rtt_last %v, rtt_min %v, rtt_smoothed %v: want all three set", ev.GetEventId(), ev.GetRttLast(), ev.GetRttMin(), ev.GetRttSmoothed())
	}
	last, lo, smoothed := ev.GetRttLast().AsDuration(), ev.GetRttMin().AsDuration(), ev.GetRttSmoothed().AsDuration()
	t.Logf("event: rtt_last %s, rtt_min %s, rtt_smoothed %s", last, lo, smoothed)
	if !within(lo, rtt) {
		t.Errorf("event %s: rtt_min %s, want %s within 10%%", ev.GetEventId(), lo, rtt)
	}
	if last < lo || smoothed < lo {
		t.Errorf("event %s: rtt_last %s and rtt_smoothed %s must not be below rtt_min %s", ev.GetEventId(), last, smoothed, lo)
	}
	for _, h := range seen {
		if h < lo.Truncate(time.Microsecond) {
			t.Errorf("x-hangup-rtt-us %s is below the smallest sample %s", h, lo)
		}
	}

	for {
		line := testtools.Receive(t, old.lines, 1, 10*time.Second)[0]
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "event" && f[1] == ev.GetEventId() {
			if f[2] != "SCOPE_STREAM" || f[3] != "REASON_RST_STREAM" {
				t.Fatalf("old receiver got %q, want the SCOPE_STREAM REASON_RST_STREAM event", line)
			}
			return
		}
	}
}

// nodeClient is a client on Node's own http2 module (nghttp2), the stack
// under @grpc/grpc-js: it opens a FullDuplex call, sends one request,
// prints "answered" when the answer comes and then holds the stream open.
const nodeClient = `
const http2 = require('http2');
const s = http2.connect('http://' + process.argv[1]);
s.on('error', (e) => { console.log('session error ' + e.message); process.exit(1); });
s.on('goaway', (code) => console.log('goaway ' + code));
const req = s.request({':method': 'POST', ':path': '/grpc.testing.TestService/FullDuplexCall',
  'content-type': 'application/grpc', 'te': 'trailers'});
req.write(Buffer.from([0, 0, 0, 0, 4, 0x12, 2, 0x10, 1]));
req.on('data', () => console.log('answered'));
`

// TestRTTWithNodeHTTP2Client: a client on nghttp2 (Node's http2, under
// grpc-js) answers the sidecar's PINGs, the one behind the preface and one
// a second with --rtt-interval, without a complaint (no GOAWAY, no
// error), and its event carries the RTT.
func TestRTTWithNodeHTTP2Client(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("node not installed (%v): the nghttp2 client case needs it", err)
	}
	_, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--rtt-interval", "1s",
		"--log-level", "debug", "--log-format", "json")
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	client := testtools.StartProcess(t, ctx, node, "-e", nodeClient, sc.Addr)
	waitFor(t, 30*time.Second, "the node client's answer", func() bool {
		return strings.Contains(client.Output(), "answered")
	})
	const want = 3
	waitFor(t, 30*time.Second, fmt.Sprintf("%d RTT samples", want), func() bool {
		return len(rttSamples(t, sc.Process.Output(), "")) >= want
	})
	kill() // the process dies; its kernel closes the connection
	<-client.Done()
	ev := receive(t, recv, 1, 10*time.Second)[0].Event
	if out := client.Output(); strings.Contains(out, "goaway") || strings.Contains(out, "error") {
		t.Errorf("the node client complained: %s", out)
	}
	if ev.Scope != event.ScopeStream || !ev.RTT.Known() {
		t.Fatalf("event %+v, want a stream event with the connection's RTT", ev)
	}
	t.Logf("node (nghttp2) client: %d samples before it left; event rtt_last %s, rtt_min %s", len(rttSamples(t, sc.Process.Output(), "")), ev.RTT.Last, ev.RTT.Min)
}
