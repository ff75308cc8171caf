//go:build !hangup_pod

package main

import "github.com/spf13/cobra"

// toolCmds are the subcommands that do not run in the app's pod: the
// webhook and the developer's commands. The hangup_pod build leaves them
// out (tools_pod.go), and with them client-go and the interop protos.
func toolCmds() []*cobra.Command {
	return []*cobra.Command{newDemoCmd(), newNotifyCheckCmd(), newInjectCmd()}
}
