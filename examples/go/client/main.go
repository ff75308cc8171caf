// Command client joins the Go example's chat and holds its stream open: a
// client that runs in a pod of its own, for test/cluster (image
// localhost/hangup-example-go-client). It prints "joined FROM" once the app
// echoed its first message, and prints every message it receives.
//
// A chat message "NAME:cancel" (NAME is --name) makes it cancel its stream
// and keep its connection; it then runs until it is killed. Killing it, or
// deleting its pod, is the killed client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
)

func main() {
	target := flag.String("target", "", "the chat service: host:port, such as a Service's name or ClusterIP and port (required)")
	name := flag.String("name", "client", "this client's name: a chat message NAME:cancel cancels its stream")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "client: missing --target: want the chat service's host:port, such as example-go.hangup-demo:8080")
		os.Exit(2)
	}
	if err := run(*target, *name); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	// Cancelled: hold the connection until the process is killed.
	select {}
}

// run joins the chat and returns once its stream is cancelled on command.
func run(target, name string) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("client of %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := chatv1.NewChatServiceClient(conn).Chat(ctx)
	if err != nil {
		return fmt.Errorf("open Chat on %s: %w", target, err)
	}
	if err := s.Send(&chatv1.ChatRequest{Text: "hello from " + name}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	m, err := s.Recv()
	if err != nil {
		return fmt.Errorf("waiting for the echo of our message: %w", err)
	}
	fmt.Printf("joined %s\n", m.GetFrom())
	for {
		m, err := s.Recv()
		if err != nil {
			return fmt.Errorf("stream ended: %w", err)
		}
		fmt.Printf("from %s: %s\n", m.GetFrom(), m.GetText())
		if m.GetText() == name+":cancel" {
			cancel()
			_, err := s.Recv()
			if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("after cancel: %v; want the stream cancelled", err)
			}
			fmt.Println("cancelled")
			return nil
		}
	}
}
