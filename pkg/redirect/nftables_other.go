//go:build !linux

package redirect

import (
	"context"
	"errors"
)

// errNotLinux: netfilter, which redirect programs, exists only in Linux;
// init-redirect runs in a pod's init container.
var errNotLinux = errors.New("redirect rules need Linux netfilter; run init-redirect in the pod's init container")

// nftBackend is the netlink backend's stand-in where there is no netlink.
type nftBackend struct{}

func (nftBackend) name() Backend                       { return BackendNFTables }
func nftAvailable() error                              { return errNotLinux }
func (nftBackend) install(context.Context, plan) error { return errNotLinux }
func (nftBackend) remove(context.Context, bool) error  { return errNotLinux }
