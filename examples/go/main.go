// Command example is a small chat server that runs behind the hangup sidecar.
// It keeps per-stream state keyed by the x-hangup-connection-id and
// x-hangup-stream-id request headers and frees it when hangup reports the
// client gone: by serving DisconnectNotify.Notify (push), by reading the
// sidecar's DisconnectWatch.Watch (pull, --watch), or both. See README.md.
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
	notifyListen := flag.String("notify-listen", "127.0.0.1:15091", "address of DisconnectNotify (the sidecar's --notify-addr); empty: serve none")
	watchAddr := flag.String("watch", "", "read events from the sidecar's DisconnectWatch.Watch at this address (its --watch-addr, e.g. 127.0.0.1:15092) instead of, or as well as, serving Notify")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *notifyListen == "" && *watchAddr == "" {
		fmt.Fprintln(os.Stderr, "example: want --notify-listen (push), --watch (pull) or both; with neither no client disconnect is ever reported")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *listen, *notifyListen, *watchAddr); err != nil {
		log.Error("example", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, notifyListen, watchAddr string) error {
	appLis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen for chat on %s: %w", listen, err)
	}
	var notifyLis net.Listener
	if notifyListen != "" {
		if notifyLis, err = net.Listen("tcp", notifyListen); err != nil {
			appLis.Close()
			return fmt.Errorf("listen for DisconnectNotify on %s: %w", notifyListen, err)
		}
		log.Info("serving DisconnectNotify (push)", "notify", notifyLis.Addr())
	}
	if watchAddr != "" {
		log.Info("watching the sidecar's DisconnectWatch.Watch (pull)", "watch", watchAddr)
	}
	log.Info("serving", "chat", appLis.Addr())
	return serve(ctx, log, appLis, notifyLis, watchAddr)
}

// serve serves the chat on appLis and, when notifyLis is not nil,
// DisconnectNotify on it, and, when watchAddr is not empty, reads the
// sidecar's Watch there, until ctx ends. Chat and Notify are separate
// servers so that the notify port can stay on loopback while the chat port
// is relayed.
func serve(ctx context.Context, log *slog.Logger, appLis, notifyLis net.Listener, watchAddr string) error {
	a := newApp(log)
	appSrv := grpc.NewServer()
	chatv1.RegisterChatServiceServer(appSrv, a)
	notifySrv := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(notifySrv, a)

	errc := make(chan error, 3)
	running := 1 // goroutines that send to errc once
	go func() { errc <- appSrv.Serve(appLis) }()
	if notifyLis != nil {
		running++
		go func() { errc <- notifySrv.Serve(notifyLis) }()
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if watchAddr != "" {
		running++
		w := &watcher{a: a, addr: watchAddr}
		go func() { errc <- w.run(watchCtx) }()
	}

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc: // one server failed: stop the others too
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
	stopWatch()
	a.wait()
	for len(errs) < running {
		errs = append(errs, <-errc)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	return nil
}
