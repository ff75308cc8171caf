// Command example is a small chat server that runs behind the hangup sidecar.
// It keeps per-stream state keyed by the x-hangup-connection-id and
// x-hangup-stream-id request headers and frees it when hangup's
// DisconnectNotify call reports the client gone. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	chatv1 "github.com/hangup-dev/hangup/examples/go/proto/chat/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address of the chat service (the sidecar relays to it)")
	notifyListen := flag.String("notify-listen", "127.0.0.1:15091", "address of DisconnectNotify (the sidecar's --notify-addr)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *listen, *notifyListen); err != nil {
		log.Error("example", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, notifyListen string) error {
	appLis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen for chat on %s: %w", listen, err)
	}
	notifyLis, err := net.Listen("tcp", notifyListen)
	if err != nil {
		appLis.Close()
		return fmt.Errorf("listen for DisconnectNotify on %s: %w", notifyListen, err)
	}
	log.Info("serving", "chat", appLis.Addr(), "notify", notifyLis.Addr())
	return serve(ctx, log, appLis, notifyLis)
}

// serve serves the chat on appLis and DisconnectNotify on notifyLis until
// ctx ends. The two are separate servers so that the notify port can stay
// on loopback while the chat port is relayed.
func serve(ctx context.Context, log *slog.Logger, appLis, notifyLis net.Listener) error {
	a := newApp(log)
	appSrv := grpc.NewServer()
	chatv1.RegisterChatServiceServer(appSrv, a)
	notifySrv := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(notifySrv, a)

	errc := make(chan error, 2)
	go func() { errc <- appSrv.Serve(appLis) }()
	go func() { errc <- notifySrv.Serve(notifyLis) }()

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc: // one server failed: stop the other too
		errs = append(errs, err)
	}
	// Give open chats a moment to finish, then cut them.
	stopped := make(chan struct{})
	go func() {
		appSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		appSrv.Stop()
		<-stopped
	}
	notifySrv.Stop()
	a.wait()
	for len(errs) < cap(errc) {
		errs = append(errs, <-errc)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	return nil
}
