package proxy_test

import (
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/hangup-dev/hangup/internal/demoapp"
)

// appProcessEnv, set to a listen address, makes the test binary run as the
// demo app in a process of its own, which a test can kill.
const appProcessEnv = "HANGUP_PROXY_TEST_APP"

func TestMain(m *testing.M) {
	if addr := os.Getenv(appProcessEnv); addr != "" {
		serveAppProcess(addr)
		return
	}
	goleak.VerifyTestMain(m)
}

// serveAppProcess serves the demo gRPC app on addr until the process is
// killed.
func serveAppProcess(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		os.Stderr.WriteString("app process: " + err.Error() + "\n")
		os.Exit(1)
	}
	app := demoapp.New(4096)
	gs := grpc.NewServer(app.ServerOptions()...)
	app.Register(gs)
	_ = gs.Serve(ln)
	os.Exit(1)
}
