//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// The Volo example speaks hangup.example.v1 (examples/proto), which has no
// Go code: its two calls are hand-encoded, as test/polyglot does.
const (
	subscribeMethod = "/hangup.example.v1.SubscriptionService/Subscribe"
	sessionsMethod  = "/hangup.example.v1.SubscriptionService/Sessions"
)

// rawCodec passes encoded messages through grpc-go under the name "proto",
// so that the content-type is the usual application/grpc.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append((*v.(*[]byte))[:0], data...)
	return nil
}

// subscriptionSessions is hangup.example.v1's Sessions RPC.
func subscriptionSessions(cc *grpc.ClientConn) func(ctx context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		req, reply := []byte{}, []byte{}
		if err := cc.Invoke(ctx, sessionsMethod, &req, &reply, grpc.ForceCodec(rawCodec{})); err != nil {
			return 0, err
		}
		// SessionsReply{int64 sessions = 1}; absent is 0.
		num, typ, n := protowire.ConsumeTag(reply)
		if n < 0 {
			return 0, nil
		}
		if num != 1 || typ != protowire.VarintType {
			return 0, fmt.Errorf("SessionsReply: field %d type %d; want 1, varint", num, typ)
		}
		v, m := protowire.ConsumeVarint(reply[n:])
		if m < 0 {
			return 0, fmt.Errorf("SessionsReply: %w", protowire.ParseError(m))
		}
		return int64(v), nil
	}
}

// cancelledSubscription opens a Subscribe stream, waits for the first
// Update (the app holds the session then) and returns its cancel.
func cancelledSubscription(cc *grpc.ClientConn) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true}
		s, err := cc.NewStream(ctx, desc, subscribeMethod, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			cancel()
			t.Fatalf("open Subscribe: %v", err)
		}
		var first []byte
		if err := s.RecvMsg(&first); err != nil {
			cancel()
			t.Fatalf("Subscribe: the first Update never came: %v", err)
		}
		return cancel
	}
}

// voloExample deploys the Volo-gRPC example (a Rust binary in an image of
// its own and the libraries it links) behind an injected sidecar and a
// Service, and checks that a cancelled stream reaches it as an event.
func voloExample(t *testing.T) {
	t.Helper()
	manifest := filepath.Join("testdata", "example-volo.yaml")
	kubectl(t, "apply", "-f", manifest)
	kubectl(t, "-n", demoNS, "rollout", "status", "deploy/example-volo", "--timeout", podWait.String())
	pod := onePod(t, demoNS, "app=example-volo")
	checkInjected(t, &pod)
	svc := strings.TrimSpace(kubectl(t, "-n", demoNS, "get", "service", "example-volo", "-o", "jsonpath={.spec.clusterIP}"))
	target := net.JoinHostPort(svc, "8080")
	conn := dialService(t, target)
	defer conn.Close()
	d := &disconnects{t: t, sessions: subscriptionSessions(conn), pod: pod.Name, target: target}
	waitServing(t, d.sessions)
	d.run(t, time.Second, []string{"RST_STREAM"}, 1, cancelledSubscription(conn))
	kubectl(t, "delete", "-f", manifest, "--wait=false")
}

// waitServing waits until the app answers its Sessions RPC through the
// Service, for at most podWait. A new Deployment's pod is Ready before the
// Service reaches it: kube-proxy programs the new endpoint a moment later
// (until then the ClusterIP refuses connections), and an app without a
// readiness probe may not listen yet.
func waitServing(t *testing.T, sessions func(ctx context.Context) (int64, error)) {
	t.Helper()
	deadline := time.Now().Add(podWait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := sessions(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app never answered Sessions through the Service within %v: %v", podWait, err)
		}
		<-tick.C
	}
}
