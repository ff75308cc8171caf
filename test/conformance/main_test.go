// Package conformance runs third-party conformance suites (h2spec, the
// grpc-go interop client and server) against real peers, directly and
// through the sidecar, to show that the sidecar changes nothing a peer can
// observe. The tools come from scripts/install-tools.sh.
package conformance

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
