package notify

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
)

// waitLimit bounds every wait for a condition in these tests.
const waitLimit = 10 * time.Second

// receiver is a real DisconnectNotify server on 127.0.0.1. answer decides
// each call's result (nil: OK); it runs before the call is recorded as
// answered and may block.
type receiver struct {
	notifyv1.UnimplementedDisconnectNotifyServer
	addr   string
	answer func(ctx context.Context, call int, req *notifyv1.NotifyRequest) error
	stop   func() // stops the server (also done when the test ends)

	mu       sync.Mutex
	calls    int // calls started
	batches  [][]*notifyv1.DisconnectEvent
	accepted []*notifyv1.DisconnectEvent // events of calls answered OK, in order
	changed  chan struct{}               // closed and replaced on every change
}

func (r *receiver) Notify(ctx context.Context, req *notifyv1.NotifyRequest) (*notifyv1.NotifyResponse, error) {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.batches = append(r.batches, req.GetEvents())
	r.changedLocked()
	r.mu.Unlock()

	var err error
	if r.answer != nil {
		err = r.answer(ctx, call, req)
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.accepted = append(r.accepted, req.GetEvents()...)
	r.changedLocked()
	r.mu.Unlock()
	return &notifyv1.NotifyResponse{}, nil
}

func (r *receiver) changedLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitUntil waits until cond, evaluated under r.mu, holds.
func (r *receiver) waitUntil(t *testing.T, what string, cond func(r *receiver) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(r), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", waitLimit, what)
		}
	}
}

func (r *receiver) snapshot() (calls int, batches [][]*notifyv1.DisconnectEvent, accepted []*notifyv1.DisconnectEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([][]*notifyv1.DisconnectEvent(nil), r.batches...), append([]*notifyv1.DisconnectEvent(nil), r.accepted...)
}

// startReceiver serves r on addr ("127.0.0.1:0" for any port) until the test
// ends.
func startReceiver(t *testing.T, addr string, r *receiver) *receiver {
	t.Helper()
	return startReceiverOn(t, "tcp", addr, r)
}

// startReceiverOn serves r on network and addr, with the server options
// opts, until the test ends.
func startReceiverOn(t *testing.T, network, addr string, r *receiver, opts ...grpc.ServerOption) *receiver {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	r.addr = lis.Addr().String()
	r.changed = make(chan struct{})
	srv := grpc.NewServer(opts...)
	notifyv1.RegisterDisconnectNotifyServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(r.stop)
	return r
}

// freeAddr returns a 127.0.0.1 address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBareServer serves no service at all on 127.0.0.1 until the test ends:
// grpc itself answers UNIMPLEMENTED.
func startBareServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
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
