// Command sidecar is hangup: an HTTP/2 relay that tells the app, within
// milliseconds and with the exact reason, when a gRPC client is gone.
//
// It builds two binaries from one source, so that flags, config and
// logging stay one code path:
//
//   - the default build has every subcommand (proxy, init-redirect, wait,
//     version and the tools: inject, the webhook, with client-go; demo;
//     notify-check) and is the hangup-tools image;
//   - built with -tags hangup_pod it has only what runs in the app's pod
//     (proxy, init-redirect, wait, version): about 40% of the size and half
//     the idle memory, because no Kubernetes client or test protos are
//     linked or initialised (see footprint_test.go). That is the hangup
//     image.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sidecar: %v\n", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is the process status for err: 0, 2 for a usage error (a bad
// flag, environment or config value) or 1.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// usageError is a bad flag, environment or config value: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sidecar",
		Short:         "hangup: tells your gRPC app when and why a client is gone",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	addConfigFlag(root)
	root.AddCommand(newProxyCmd(), newVersionCmd(), newInitRedirectCmd(), newWaitCmd())
	root.AddCommand(toolCmds()...)
	return root
}
