package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/hangup-dev/hangup/pkg/notify/check"
)

func newNotifyCheckCmd() *cobra.Command {
	var o check.Options
	cmd := &cobra.Command{
		Use:   "notify-check --target ADDR",
		Short: "Check that a DisconnectNotify server, in any language, answers what the sidecar sends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			results, err := check.Run(cmd.Context(), o)
			if err != nil {
				return usageError{err}
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
	cmd.Flags().StringVar(&o.Target, "target", "", "DisconnectNotify server: host:port or unix:///path (required)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", check.DefaultTimeout, "timeout of each Notify call")
	return cmd
}
