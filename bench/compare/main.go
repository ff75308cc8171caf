//go:build linux

// Command compare measures hangup against real HTTP/2 proxies (haproxy,
// nginx, nghttpx), a splice-based TCP relay and direct calls, all in front
// of the same grpc-go app on 127.0.0.1, and writes docs/BENCHMARKS.md with
// its charts. `make bench-compare` runs it in full; -short runs a few
// seconds per scenario.
//
// Usage: go run ./bench/compare [-short] [-duration 8s] [-conns 1000,10000]
// [-peers direct,tcprelay,hangup,haproxy,nginx,nghttpx] [-out docs]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hangup-dev/hangup/bench/harness"
)

func main() {
	harness.RunChildIfAsked()
	short := flag.Bool("short", false, "CI mode: 2s per scenario, 200 connections, fewer notify samples")
	duration := flag.Duration("duration", 0, "length of each timed scenario (default 8s, -short 2s; minimum 1s)")
	conns := flag.String("conns", "", "connection counts of the memory scenario, comma-separated (default 1000,10000; -short 200)")
	peers := flag.String("peers", strings.Join(harness.AllPeers, ","), "peers to measure, comma-separated")
	out := flag.String("out", "docs", "directory for BENCHMARKS.md and its charts; empty: print only")
	flag.Parse()

	opts := harness.Options{Duration: *duration, Short: *short, Log: os.Stderr}
	if *short {
		if opts.Duration == 0 {
			opts.Duration = 2 * time.Second
		}
		if *conns == "" {
			*conns = "200"
		}
	}
	if *conns != "" {
		for _, s := range strings.Split(*conns, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "compare: invalid -conns %q: want positive integers separated by commas\n", *conns)
				os.Exit(2)
			}
			opts.Conns = append(opts.Conns, n)
		}
	}
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			opts.Peers = append(opts.Peers, p)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := harness.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		os.Exit(1)
	}
	res.Command = "go run ./bench/compare " + strings.Join(os.Args[1:], " ")
	fmt.Print(harness.Tables(res))
	if *out == "" {
		return
	}
	if err := harness.WriteReport(res, *out); err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "wrote %s/BENCHMARKS.md\n", *out)
}
