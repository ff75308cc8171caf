package polyglot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// The suite speaks hangup.example.v1 with hand-encoded messages (three
// small ones), so that the shared .proto needs no Go code generation.
const (
	subscribeMethod = "/hangup.example.v1.SubscriptionService/Subscribe"
	sessionsMethod  = "/hangup.example.v1.SubscriptionService/Sessions"
)

// clientEnv makes the re-executed test binary a client that subscribes
// through the address it names and then waits to be killed.
const clientEnv = "HANGUP_POLYGLOT_CLIENT"

// rawCodec passes already encoded protobuf messages through grpc-go. Its
// name is "proto" so that the content-type is the usual application/grpc.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("rawCodec: marshal %T, want *rawMsg", v)
	}
	return m.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("rawCodec: unmarshal into %T, want *rawMsg", v)
	}
	m.b = append(m.b[:0], data...)
	return nil
}

type rawMsg struct{ b []byte }

// subscribeRequest encodes hangup.example.v1.SubscribeRequest{topic}.
func subscribeRequest(topic string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, topic)
}

// update is hangup.example.v1.Update.
type update struct {
	topic        string
	seq          int64
	connectionID string
	streamID     uint32
}

func parseUpdate(b []byte) (update, error) {
	var u update
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return u, fmt.Errorf("parse Update tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return u, fmt.Errorf("parse Update.topic: %w", protowire.ParseError(n))
			}
			u.topic, b = v, b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return u, fmt.Errorf("parse Update.seq: %w", protowire.ParseError(n))
			}
			u.seq, b = int64(v), b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return u, fmt.Errorf("parse Update.connection_id: %w", protowire.ParseError(n))
			}
			u.connectionID, b = v, b[n:]
		case num == 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return u, fmt.Errorf("parse Update.stream_id: %w", protowire.ParseError(n))
			}
			u.streamID, b = uint32(v), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return u, fmt.Errorf("parse Update field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return u, nil
}

// parseSessionsReply decodes hangup.example.v1.SessionsReply.
func parseSessionsReply(b []byte) (int64, error) {
	var sessions int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("parse SessionsReply tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, fmt.Errorf("parse SessionsReply.sessions: %w", protowire.ParseError(n))
			}
			sessions, b = int64(v), b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, fmt.Errorf("parse SessionsReply field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return sessions, nil
}

// dial returns a grpc-go connection to addr that speaks rawMsg.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := newConn(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newConn(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
	}
	return conn, nil
}

// sessions asks the app directly how many sessions it holds.
func sessions(ctx context.Context, conn *grpc.ClientConn) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var reply rawMsg
	if err := conn.Invoke(ctx, sessionsMethod, &rawMsg{}, &reply); err != nil {
		return 0, fmt.Errorf("call Sessions: %w", err)
	}
	return parseSessionsReply(reply.b)
}

// subscribe opens a Subscribe stream and waits for its first Update, which
// the app sends once it holds the session.
func subscribe(ctx context.Context, conn *grpc.ClientConn) (grpc.ClientStream, update, error) {
	desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true}
	stream, err := conn.NewStream(ctx, desc, subscribeMethod)
	if err != nil {
		return nil, update{}, fmt.Errorf("open Subscribe: %w", err)
	}
	u, err := recvUpdate(stream)
	if err != nil {
		return nil, update{}, fmt.Errorf("first Update: %w", err)
	}
	if u.seq != 0 {
		return nil, update{}, fmt.Errorf("first Update has seq %d, want 0", u.seq)
	}
	return stream, u, nil
}

func recvUpdate(stream grpc.ClientStream) (update, error) {
	var m rawMsg
	if err := stream.RecvMsg(&m); err != nil {
		return update{}, err
	}
	return parseUpdate(m.b)
}

// completeCall runs one Subscribe call to its normal end: one request, its
// Update, half-close, OK.
func completeCall(ctx context.Context, conn *grpc.ClientConn) error {
	stream, _, err := subscribe(ctx, conn)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&rawMsg{b: subscribeRequest("news")}); err != nil {
		return fmt.Errorf("send SubscribeRequest: %w", err)
	}
	u, err := recvUpdate(stream)
	if err != nil {
		return fmt.Errorf("Update for the request: %w", err)
	}
	if u.topic != "news" || u.seq != 1 {
		return fmt.Errorf("Update for the request = %+v, want topic news, seq 1", u)
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	if _, err := recvUpdate(stream); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after half-close: got %v, want the call to end with OK", err)
	}
	return nil
}

// runClient is the body of the re-executed test binary (clientEnv set): it
// subscribes through addr, says so on stdout and blocks until it is killed
// (or, as a backstop, for a minute).
func runClient(addr string) int {
	conn, err := newConn(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, u, err := subscribe(ctx, conn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("subscribed %s/%d\n", u.connectionID, u.streamID)
	<-ctx.Done()
	return 0
}

// startClientProcess re-executes the test binary as a client of addr.
func startClientProcess(t *testing.T, addr string) *testtools.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary to re-execute: %v", err)
	}
	// The child inherits the environment at start; TestMain of this process
	// has long run, so the variable changes nothing here.
	t.Setenv(clientEnv, addr)
	return testtools.StartProcess(t, context.Background(), exe, "-test.run=^$")
}

// freeAddr is a loopback host:port for a child told its port by flag.
func freeAddr(t *testing.T) (string, int) {
	t.Helper()
	port := testtools.FreePort(t)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port
}
