//go:build linux

package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/hangup-dev/hangup/internal/h2raw"
)

const (
	unaryMethod = "/grpc.testing.TestService/UnaryCall"
	fullDuplex  = "/grpc.testing.TestService/FullDuplexCall"
	// unaryResponseSize is the payload each unary call asks back, bytes.
	unaryResponseSize = 100
)

// unaryRequest is the body of every unary call the load generators send.
func unaryRequest() *testgrpc.SimpleRequest {
	return &testgrpc.SimpleRequest{ResponseSize: unaryResponseSize, Payload: &testgrpc.Payload{Body: make([]byte, 100)}}
}

// grpcFrame is msg with gRPC's 5-byte length prefix.
func grpcFrame(msg proto.Message) ([]byte, error) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...), nil
}

// Saturation is one h2load run.
type Saturation struct {
	Requests  int64   // succeeded
	Failed    int64   // failed or errored
	Seconds   float64 // measured period, after the warm-up
	PerSecond float64 // as h2load reports it, over the measured period
	Wall      float64 // seconds h2load ran, warm-up included
}

var (
	h2loadFinished = regexp.MustCompile(`finished in ([0-9.]+)(m?s), ([0-9.]+) req/s`)
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// runH2load sends gRPC unary calls to addr from h2load (a C client, so the
// load generator takes as little of the shared CPU as possible) for d, as
// fast as it can when rps is 0, else at rps calls/s in total. With a rate it
// also returns every call's latency, read from h2load's per-request log.
// h2load checks the HTTP status, not grpc-status: StartPeer's UnaryCall
// check is what shows that each peer relays the calls correctly.
func runH2load(ctx context.Context, dir, addr string, d time.Duration, conns, streams int, rps float64) (Saturation, []time.Duration, error) {
	var s Saturation
	bin, err := findBin("h2load")
	if err != nil {
		return s, nil, err
	}
	body := filepath.Join(dir, "unary.bin")
	frame, err := grpcFrame(unaryRequest())
	if err != nil {
		return s, nil, err
	}
	if err := os.WriteFile(body, frame, 0o644); err != nil {
		return s, nil, fmt.Errorf("write %s: %w", body, err)
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-D", strconv.Itoa(secs), "-c", strconv.Itoa(conns), "-m", strconv.Itoa(streams), "-t", "1",
		"-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"}
	if d >= 5*time.Second {
		// Connections and both ends' buffers grow before the clock starts.
		args = append(args, "--warm-up-time=1s")
	}
	logFile := filepath.Join(dir, "h2load-requests.tsv")
	if rps > 0 {
		args = append(args, "--rps="+strconv.FormatFloat(rps/float64(conns), 'f', 1, 64), "--log-file="+logFile)
	}
	args = append(args, "http://"+addr+unaryMethod)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	s.Wall = time.Since(start).Seconds()
	if err != nil {
		return s, nil, fmt.Errorf("h2load %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	m := h2loadFinished.FindSubmatch(out)
	r := h2loadRequests.FindSubmatch(out)
	if m == nil || r == nil {
		return s, nil, fmt.Errorf("h2load %s: no result in its output:\n%s", strings.Join(args, " "), out)
	}
	s.Seconds, _ = strconv.ParseFloat(string(m[1]), 64)
	if string(m[2]) == "ms" {
		s.Seconds /= 1000
	}
	s.Requests, _ = strconv.ParseInt(string(r[4]), 10, 64)
	failed, _ := strconv.ParseInt(string(r[5]), 10, 64)
	errored, _ := strconv.ParseInt(string(r[6]), 10, 64)
	s.Failed = failed + errored
	s.PerSecond, _ = strconv.ParseFloat(string(m[3]), 64)
	if s.Requests == 0 {
		return s, nil, fmt.Errorf("h2load %s: no request succeeded:\n%s", strings.Join(args, " "), out)
	}
	if rps == 0 {
		return s, nil, nil
	}
	defer os.Remove(logFile)
	lat, err := readH2loadLog(logFile)
	return s, lat, err
}

// readH2loadLog returns the latency of every request h2load logged with
// status 200 (columns: start µs since the epoch, status, µs to the end of
// the response).
func readH2loadLog(path string) ([]time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read h2load's request log: %w", err)
	}
	var lat []time.Duration
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "200" {
			continue
		}
		v, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("h2load request log line %q: %w", strings.TrimSpace(line), err)
		}
		lat = append(lat, time.Duration(v)*time.Microsecond)
	}
	return lat, nil
}

// runRate calls UnaryCall at rps calls/s for d and returns the latency
// percentiles over every call.
func runRate(ctx context.Context, dir, addr string, rps float64, d time.Duration, conns, streams int) (Latency, error) {
	l := Latency{TargetRPS: rps}
	s, lat, err := runH2load(ctx, dir, addr, d, conns, streams, rps)
	if err != nil {
		return l, err
	}
	if len(lat) == 0 {
		return l, fmt.Errorf("h2load at %.0f calls/s logged no successful call", rps)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	l.Count, l.Errors, l.RPS = len(lat), int(s.Failed), s.PerSecond
	l.P50, l.P90, l.P99, l.P999 = q(0.50), q(0.90), q(0.99), q(0.999)
	return l, nil
}

// Latency is the distribution of one fixed-rate run.
type Latency struct {
	TargetRPS float64
	RPS       float64 // achieved
	Count     int
	Errors    int
	P50, P90  time.Duration
	P99, P999 time.Duration
}

// Streaming is one long bidi stream's throughput.
type Streaming struct {
	Messages  int64
	Bytes     int64
	Seconds   float64
	MsgPerSec float64
	BytesPS   float64
	// CPUPerGiB is the proxy's CPU seconds per GiB received by the client;
	// 0 for direct or when it could not be read. On shared cores the client
	// and the app compete with the proxy, so throughput alone can hide
	// what the relay itself spends.
	CPUPerGiB float64
}

// runStreaming keeps one FullDuplexCall stream busy for d: window requests
// are in flight, each asking for one message of size bytes, and each answer
// sends the next request.
func runStreaming(ctx context.Context, addr string, size, window int, d time.Duration) (Streaming, error) {
	var s Streaming
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(size+1024)))
	if err != nil {
		return s, fmt.Errorf("client for %s: %w", addr, err)
	}
	defer cc.Close()
	// The bound is for a peer that stalls: Recv would wait forever.
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	stream, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		return s, fmt.Errorf("open FullDuplexCall through %s: %w", addr, err)
	}
	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(size)}}}
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	var wg sync.WaitGroup
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-credit:
			}
			if err := stream.Send(req); err != nil {
				if ctx.Err() == nil {
					sendErr = err
				}
				return
			}
		}
	}()
	start := time.Now()
	deadline := start.Add(d)
	var recvErr error
	for time.Now().Before(deadline) {
		m, err := stream.Recv()
		if err != nil {
			recvErr = fmt.Errorf("receive through %s: %w", addr, err)
			break
		}
		s.Messages++
		s.Bytes += int64(len(m.GetPayload().GetBody()))
		credit <- struct{}{}
	}
	s.Seconds = time.Since(start).Seconds()
	cancel()
	wg.Wait()
	if err := errors.Join(recvErr, sendErr); err != nil {
		return s, err
	}
	s.MsgPerSec = float64(s.Messages) / s.Seconds
	s.BytesPS = float64(s.Bytes) / s.Seconds
	return s, nil
}

// OpenStreams opens n FullDuplexCall streams (1, 3, ...) on c and waits
// until the app has answered each, so that every hop holds the stream.
func OpenStreams(c *h2raw.Client, n int, timeout time.Duration) error {
	msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	if err != nil {
		return err
	}
	for i := range n {
		id := uint32(2*i + 1)
		if err := c.OpenStream(id, h2raw.GRPCRequest(fullDuplex)); err != nil {
			return fmt.Errorf("open stream %d: %w", id, err)
		}
		if err := c.SendMessage(id, msg, false); err != nil {
			return fmt.Errorf("send on stream %d: %w", id, err)
		}
	}
	seen := 0
	_, err = c.ReadUntil(timeout, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.DataFrame:
			seen++
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.Framer.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = c.Framer.WritePing(true, f.Data)
			}
		}
		return seen == n
	})
	if err != nil {
		return fmt.Errorf("wait for the answers on %d streams: %w", n, err)
	}
	return nil
}

// handshake dials addr and completes the SETTINGS exchange, so the
// connection is an established, idle HTTP/2 connection.
func handshake(addr string, timeout time.Duration) (*h2raw.Client, error) {
	c, err := h2raw.Dial(addr)
	if err != nil {
		return nil, err
	}
	gotSettings, gotAck := false, false
	_, err = c.ReadUntil(timeout, func(f http2.Frame) bool {
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if sf.IsAck() {
				gotAck = true
			} else {
				gotSettings = true
				_ = c.Framer.WriteSettingsAck()
			}
		}
		return gotSettings && gotAck
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("SETTINGS exchange with %s: %w", addr, err)
	}
	return c, nil
}

// kubeletProbes is how many times probeLikeKubelet calls each probe: the
// first call maps back what answering needs; later ones show that it
// stays.
const kubeletProbes = 3

// probeTimeout is the kubelet's default timeoutSeconds.
const probeTimeout = time.Second

// probeLikeKubelet calls hangup's readiness and liveness probes at admin
// as the kubelet does: an HTTP GET on a new connection each time, which
// must answer 200 within probeTimeout.
func probeLikeKubelet(ctx context.Context, admin string) error {
	client := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	for range kubeletProbes {
		for _, path := range []string{"/readyz", "/healthz"} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("probe %s like the kubelet: %w", path, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("probe %s like the kubelet: %s %q, want 200", path, resp.Status, body)
			}
		}
	}
	return nil
}

// Memory is the proxy's RSS growth per idle connection and per idle open
// stream (one stream on each of Conns connections), and the fresh
// process's own footprint before the first of them. Every reading is a
// settled one (settle.go).
type Memory struct {
	Conns         int
	PerConnBytes  float64
	PerStreamByte float64
	// IdleRSSBytes and IdleThreads are the process's (with its workers)
	// just started, after the readiness calls and, for hangup, the
	// kubelet's probes, with no connection open: what a pod pays for the
	// proxy before any traffic. IdleAnonBytes is the part of the RSS that
	// is the process's own memory (heap, stacks); the rest is file pages
	// (the binary, shared libraries), which every process of the same
	// image on a node shares through the page cache.
	IdleRSSBytes  int64
	IdleAnonBytes int64
	IdleThreads   int
	// Unsettled names the steps (MemoryStepBase, ...) whose RSS still
	// moved after settleMax and was read as it was.
	Unsettled []string
}

// The memory scenario's steps, as MeasureMemory passes them to its
// callback.
const (
	MemoryStepBase    = "base"
	MemoryStepConns   = "connections"
	MemoryStepStreams = "streams"
)

// MeasureMemory opens conns idle connections to p, then one stream on
// each, reading p's settled RSS before and after each step. after, if
// not nil, is called once each step's reading is taken, with the step's
// name and that reading (for a caller that looks deeper, e.g. at
// hangup's /metrics).
func MeasureMemory(ctx context.Context, p *Peer, conns int, after func(step string, u ProcUsage)) (Memory, error) {
	m := Memory{Conns: conns}
	read := func(step string) (ProcUsage, error) {
		u, ok, err := settled(ctx, realClock, p.Usage)
		if err != nil {
			return u, fmt.Errorf("%s RSS of %s: %w", step, p.Name, err)
		}
		if !ok {
			m.Unsettled = append(m.Unsettled, step)
		}
		if after != nil {
			after(step, u)
		}
		return u, nil
	}
	if p.AdminAddr != "" {
		if err := probeLikeKubelet(ctx, p.AdminAddr); err != nil {
			return m, err
		}
	}
	base, err := read(MemoryStepBase)
	if err != nil {
		return m, err
	}
	m.IdleRSSBytes, m.IdleAnonBytes, m.IdleThreads = base.RSSBytes, base.AnonBytes, base.Threads
	clients := make([]*h2raw.Client, 0, conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := handshake(p.Addr, 10*time.Second)
		if err != nil {
			return m, fmt.Errorf("connection %d of %d: %w", i+1, conns, err)
		}
		clients = append(clients, c)
	}
	withConns, err := read(MemoryStepConns)
	if err != nil {
		return m, err
	}
	for i, c := range clients {
		if err := OpenStreams(c, 1, 10*time.Second); err != nil {
			return m, fmt.Errorf("connection %d of %d: %w", i+1, conns, err)
		}
	}
	withStreams, err := read(MemoryStepStreams)
	if err != nil {
		return m, err
	}
	m.PerConnBytes = float64(withConns.RSSBytes-base.RSSBytes) / float64(conns)
	m.PerStreamByte = float64(withStreams.RSSBytes-withConns.RSSBytes) / float64(conns)
	return m, nil
}
