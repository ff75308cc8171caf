package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangup-dev/hangup/pkg/ports"
	"github.com/hangup-dev/hangup/pkg/redirect"
)

func newInitRedirectCmd() *cobra.Command {
	var c redirect.Config
	var remove bool
	var logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "init-redirect",
		Short: "Redirect the pod's inbound TCP connections to the sidecar (needs NET_ADMIN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			c.Logger = log
			if remove {
				return redirect.Remove(cmd.Context(), c)
			}
			return redirect.Run(cmd.Context(), c)
		},
	}
	c.RegisterFlags(cmd.Flags())
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the rules instead of adding them")
	addLogFlags(cmd.Flags(), &logFormat, &logLevel, "json")
	return cmd
}

// newWaitCmd is the injected sidecar's postStart hook on clusters without
// native sidecars: the kubelet starts the next container (the app) only
// once the hook returns, so the app never starts before its proxy is
// healthy (Istio's holdApplicationUntilProxyStarts works the same way).
func newWaitCmd() *cobra.Command {
	var admin string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the sidecar's /healthz answers 200 (the injected postStart hook)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageError{fmt.Errorf("invalid --timeout %s: want a duration above 0s such as 2m", timeout)}
			}
			host, port, err := net.SplitHostPort(admin)
			if err != nil || port == "" {
				return usageError{fmt.Errorf("invalid --admin %q: want host:port or :port such as :%d", admin, ports.Admin)}
			}
			if host == "" {
				host = "127.0.0.1"
			}
			return waitHealthy(cmd.Context(), "http://"+net.JoinHostPort(host, port)+"/healthz", timeout)
		},
	}
	cmd.Flags().StringVar(&admin, "admin", ":"+strconv.Itoa(ports.Admin), "the sidecar's admin address (:port means 127.0.0.1:port)")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "give up after this long")
	return cmd
}

// defaultWaitTimeout is wait's --timeout when none is given. The injector
// always passes its own (inject.HoldTimeout, which TestWaitTimeoutAgrees
// keeps equal); this command does not import pkg/inject so that the pod's
// binary links no Kubernetes client.
const defaultWaitTimeout = 2 * time.Minute

// waitPoll is how often waitHealthy asks.
const waitPoll = 100 * time.Millisecond

func waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sidecar not healthy at %s after %s (last: %v): see the log of the container running `sidecar proxy`", url, timeout, last)
		case <-tick.C:
		}
	}
}
