// Command oldreceiver is a DisconnectNotify receiver built from the code
// generated for the first hangup.notify.v1 contract (commit 640d4a1, before
// the incarnation field, SCOPE_SIDECAR and Watch), kept verbatim in
// ./notifyv1. The e2e tests run it against the current sidecar to show that
// every change to the contract since was additive: an app generated then
// keeps receiving its events.
//
// It serves on --listen and writes one line per event to stdout:
//
//	event <event_id> <scope> <reason> <connection_id> <stream_id>
//
// It runs in its own process because its generated code registers the
// same proto names as api/hangup/notify/v1, which one binary cannot hold
// twice.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/test/e2e/oldreceiver/notifyv1"
)

type receiver struct {
	notifyv1.UnimplementedDisconnectNotifyServer
	mu sync.Mutex // one line at a time on stdout
}

func (r *receiver) Notify(_ context.Context, req *notifyv1.NotifyRequest) (*notifyv1.NotifyResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range req.GetEvents() {
		if _, err := fmt.Printf("event %s %s %s %q %d\n", ev.GetEventId(), ev.GetScope(), ev.GetReason(), ev.GetConnectionId(), ev.GetStreamId()); err != nil {
			return nil, fmt.Errorf("write the event to stdout: %w", err)
		}
	}
	return &notifyv1.NotifyResponse{}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve DisconnectNotify on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("oldreceiver: listen on --listen %s: %v", *listen, err)
	}
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	gs := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(gs, &receiver{})
	log.Fatal(gs.Serve(ln))
}
