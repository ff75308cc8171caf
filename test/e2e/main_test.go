// Package e2e tests the built sidecar binary end to end: a real grpc-go app
// and DisconnectNotify receiver, real clients, and the events the app gets.
package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(sessionClientEnv); spec != "" {
		os.Exit(runSessionClient(spec))
	}
	goleak.VerifyTestMain(m)
}
