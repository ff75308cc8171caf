//go:build linux

// Command pause is the pod sandbox process of scripts/cluster.sh's node: it
// holds the pod's namespaces, reaps the zombies it inherits as PID 1, and
// exits on SIGINT or SIGTERM, like Kubernetes' own pause (which is C, and is
// pulled from a registry this node cannot reach).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap waits for every child that has exited, without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}
