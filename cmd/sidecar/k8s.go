package main

import (
	"flag"

	"github.com/spf13/cobra"

	"github.com/hangup-dev/hangup/pkg/inject"
	"github.com/hangup-dev/hangup/pkg/redirect"
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
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	c.RegisterFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
	cmd.Flags().StringVar(&logFormat, "log-format", "json", "log format: text or json")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

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
	fs := flag.NewFlagSet("init-redirect", flag.ContinueOnError)
	c.RegisterFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the rules instead of adding them")
	cmd.Flags().StringVar(&logFormat, "log-format", "json", "log format: text or json")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
