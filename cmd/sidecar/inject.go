//go:build !hangup_pod

package main

import (
	"github.com/spf13/cobra"

	"github.com/hangup-dev/hangup/pkg/inject"
)

func newInjectCmd() *cobra.Command {
	var c inject.ServerConfig
	var logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Run the mutating admission webhook that adds the sidecar to annotated Pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			c.Logger = log
			return inject.Serve(cmd.Context(), c)
		},
	}
	c.RegisterFlags(cmd.Flags())
	addLogFlags(cmd.Flags(), &logFormat, &logLevel, "json")
	return cmd
}
