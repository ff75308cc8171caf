//go:build hangup_pod

package main

import "github.com/spf13/cobra"

// toolCmds is empty in the pod's binary: see tools.go.
func toolCmds() []*cobra.Command { return nil }
