//go:build !hangup_pod

package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/hangup-dev/hangup/pkg/notify/check"
)

func newNotifyCheckCmd() *cobra.Command {
	var o check.Options
	var w check.WatchOptions
	cmd := &cobra.Command{
		Use:   "notify-check --target ADDR | --watch-listen ADDR",
		Short: "Check that an app's DisconnectNotify server (push) or Watch client (pull), in any language, handles what the sidecar sends",
		Long: `notify-check checks an app's side of hangup.notify.v1.DisconnectNotify.

--target ADDR: push mode. It calls the app's Notify server with the batches
the sidecar sends and checks that each is acknowledged in time.

--watch-listen ADDR: pull mode. It plays the sidecar's Watch server on ADDR
(point the app's watcher there) and checks, from outside, that the app
resumes with the incarnation and sequence of the last event it got when its
stream ends, moves past a gap the sidecar reports, and follows a sidecar
restart. Resuming a little early is accepted: duplicates are allowed.

Give either or both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Target == "" && w.Listen == "" {
				return usageError{errors.New("notify-check: want --target (the app's Notify server) or --watch-listen (where the app's watcher connects), or both")}
			}
			var results []check.Result
			if o.Target != "" {
				r, err := check.Run(cmd.Context(), o)
				if err != nil {
					return usageError{err}
				}
				results = append(results, r...)
			}
			if w.Listen != "" {
				r, err := check.RunWatch(cmd.Context(), w)
				if err != nil {
					return usageError{err}
				}
				results = append(results, r...)
			}
			if err := check.Print(cmd.OutOrStdout(), results); err != nil {
				return err
			}
			if !check.Passed(results) {
				return errors.New("notify-check failed: see the table above")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Target, "target", "", "the app's DisconnectNotify server (push): host:port or unix:///path")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", check.DefaultTimeout, "timeout of each Notify call")
	cmd.Flags().StringVar(&o.Incarnation, "incarnation", "", "incarnation of the sidecar in front of the target (its start-up log names it), named live by the restart check; "+
		"empty: a new one, and the app frees every session its sidecar relayed")
	cmd.Flags().StringVar(&w.Listen, "watch-listen", "", "serve Watch here and check the app's watcher (pull): host:port or unix:///path it dials")
	cmd.Flags().DurationVar(&w.ConnectTimeout, "watch-timeout", check.DefaultConnectTimeout, "how long to wait for each Watch call of the app")
	cmd.Flags().DurationVar(&w.Settle, "watch-settle", check.DefaultSettle, "how long the app gets to handle a burst of events before its stream is ended")
	return cmd
}
