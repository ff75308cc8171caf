// Package demoapp is a small gRPC app for the demo and the tests: grpc-go's
// interop TestService, which records every call with the x-hangup-* ids it
// was given and when and how its handler ended.
package demoapp

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/notify"
)

// Call is one handler invocation as the app saw it.
type Call struct {
	Method       string
	ConnectionID string // x-hangup-connection-id, "" when called directly
	StreamID     uint32 // x-hangup-stream-id
	IDValues     int    // how many x-hangup-connection-id values arrived
	Metadata     metadata.MD
	Started      time.Time
	Ended        time.Time
	Err          error // the handler context's error when it ended; nil if it completed
}

// App implements grpc.testing.TestService.
type App struct {
	testgrpc.UnimplementedTestServiceServer

	// Ended receives every finished call; when nil, calls are only kept.
	Ended chan Call

	sent atomic.Int64 // message payload bytes sent by streaming handlers

	mu    sync.Mutex
	calls []Call
}

// SentBytes reports the payload bytes the streaming handlers have sent.
func (a *App) SentBytes() int64 { return a.sent.Load() }

// New returns an App whose Ended channel holds up to buffer calls.
func New(buffer int) *App { return &App{Ended: make(chan Call, buffer)} }

// Register registers the service and the recording interceptors.
func (a *App) Register(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, a) }

// ServerOptions returns the interceptors that record calls.
func (a *App) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			c := a.begin(ctx, info.FullMethod)
			resp, err := h(ctx, req)
			a.end(ctx, c, err)
			return resp, err
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			c := a.begin(ss.Context(), info.FullMethod)
			err := h(srv, ss)
			a.end(ss.Context(), c, err)
			return err
		}),
	}
}

func (a *App) begin(ctx context.Context, method string) Call {
	md, _ := metadata.FromIncomingContext(ctx)
	c := Call{Method: method, Metadata: md, Started: time.Now()}
	if v := md.Get("x-hangup-connection-id"); len(v) > 0 {
		c.ConnectionID, c.IDValues = v[0], len(v)
	}
	if v := md.Get("x-hangup-stream-id"); len(v) > 0 {
		id, _ := strconv.ParseUint(v[0], 10, 32)
		c.StreamID = uint32(id)
	}
	return c
}

func (a *App) end(ctx context.Context, c Call, err error) {
	c.Ended = time.Now()
	c.Err = ctx.Err()
	a.mu.Lock()
	a.calls = append(a.calls, c)
	a.mu.Unlock()
	if a.Ended != nil {
		select {
		case a.Ended <- c:
		default:
		}
	}
}

// Calls returns the calls that have ended so far.
func (a *App) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Call(nil), a.calls...)
}

func payload(n int32) *testgrpc.Payload {
	return &testgrpc.Payload{Body: make([]byte, n)}
}

// EmptyCall answers at once.
func (a *App) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// UnaryCall answers with ResponseSize bytes, or the status asked for.
func (a *App) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if st := in.GetResponseStatus(); st != nil && st.Code != 0 {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return &testgrpc.SimpleResponse{Payload: payload(in.GetResponseSize())}, nil
}

// StreamingOutputCall sends one message per ResponseParameters.
func (a *App) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, s testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		if d := p.GetIntervalUs(); d > 0 {
			t := time.NewTimer(time.Duration(d) * time.Microsecond)
			select {
			case <-s.Context().Done():
				t.Stop()
				return s.Context().Err()
			case <-t.C:
			}
		}
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
		a.sent.Add(int64(p.GetSize()))
	}
	return nil
}

// StreamingInputCall adds up the payload sizes it receives.
func (a *App) StreamingInputCall(s testgrpc.TestService_StreamingInputCallServer) error {
	var total int32
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(m.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers each request with its ResponseParameters, until the
// client half-closes or goes away: the long-lived stream hangup exists for.
func (a *App) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range m.GetResponseParameters() {
			if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
				return err
			}
			a.sent.Add(int64(p.GetSize()))
		}
	}
}

// Received is a DisconnectEvent as the app's receiver got it.
type Received struct {
	Event event.Event
	At    time.Time
}

// Receiver is the app's DisconnectNotify service: it hands every client
// disconnect it receives to Events and answers OK. The events that name the
// sidecar's live incarnation (SCOPE_SIDECAR) are not client disconnects:
// Receiver keeps the last one (Live) and hands them to Sidecar instead of
// Events, so that counts of disconnects stay exact across sidecar restarts.
type Receiver struct {
	notifyv1.UnimplementedDisconnectNotifyServer
	Events chan Received
	// Sidecar receives the SCOPE_SIDECAR events while it has room; those
	// that find it full are only remembered by Live.
	Sidecar chan Received

	mu   sync.Mutex
	live string
}

// Live returns the incarnation the last SCOPE_SIDECAR event named, or ""
// before the first.
func (r *Receiver) Live() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

// NewReceiver returns a Receiver whose channel holds up to buffer events;
// beyond that, events are refused with UNAVAILABLE and the sidecar retries.
func NewReceiver(buffer int) *Receiver {
	return &Receiver{Events: make(chan Received, buffer), Sidecar: make(chan Received, 16)}
}

// Notify implements DisconnectNotify.
func (r *Receiver) Notify(_ context.Context, req *notifyv1.NotifyRequest) (*notifyv1.NotifyResponse, error) {
	now := time.Now()
	for _, e := range req.GetEvents() {
		if e.GetScope() == notifyv1.Scope_SCOPE_SIDECAR {
			r.mu.Lock()
			r.live = e.GetIncarnation()
			r.mu.Unlock()
			select {
			case r.Sidecar <- Received{Event: notify.FromProto(e), At: now}:
			default:
			}
			continue
		}
		select {
		case r.Events <- Received{Event: notify.FromProto(e), At: now}:
		default:
			return nil, status.Error(codes.Unavailable, "receiver buffer full")
		}
	}
	return &notifyv1.NotifyResponse{}, nil
}
