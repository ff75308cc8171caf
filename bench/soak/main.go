//go:build linux

// Command soak runs the built sidecar for a bounded time while client
// connections open and die in every way (RST_STREAM, close, TCP reset,
// silence under keepalive 1s/1s, protocol error, normal completion) at a
// steady rate and one stream runs throughout. At the end every disconnect
// must have produced exactly one event at the app's DisconnectNotify
// receiver (counted per reason on both sides), and the sidecar's fds, RSS
// and (when /metrics exports them) goroutines must be back near their
// baseline. It exits 1 when any of that fails.
//
// Usage: go run ./bench/soak [-duration 10m] [-rate 50] [-workers 64] [-traced]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hangup-dev/hangup/bench/harness"
)

func main() {
	harness.RunChildIfAsked()
	var cfg config
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long connections keep being opened (minimum 1s)")
	flag.IntVar(&cfg.Rate, "rate", 50, "connections opened per second (minimum 1)")
	flag.IntVar(&cfg.Workers, "workers", 64, "connections in flight at most (minimum 1)")
	flag.BoolVar(&cfg.Traced, "traced", false, "trace every stream (OTEL_TRACES_SAMPLER=always_on), exported over OTLP/gRPC to a receiver that counts the spans")
	flag.Parse()
	if cfg.Duration < time.Second || cfg.Rate < 1 || cfg.Workers < 1 {
		fmt.Fprintf(os.Stderr, "soak: invalid -duration %s -rate %d -workers %d: want at least 1s, 1 and 1\n", cfg.Duration, cfg.Rate, cfg.Workers)
		os.Exit(2)
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(res.report())
	if err := res.check(); err != nil {
		fmt.Fprintf(os.Stderr, "soak FAILED:\n%v\n", err)
		os.Exit(1)
	}
	fmt.Println("soak passed")
}
