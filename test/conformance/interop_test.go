package conformance

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
)

// interopCases are the grpc-go interop client's test cases that need no
// credentials or load balancing: every RPC shape (unary, client, server
// and bidirectional streaming), cancellation from either end, deadlines,
// metadata, trailers and status details.
var interopCases = []string{
	"empty_unary",
	"large_unary",
	"client_streaming",
	"server_streaming",
	"ping_pong",
	"empty_stream",
	"cancel_after_begin",
	"cancel_after_first_response",
	"timeout_on_sleeping_server",
	"custom_metadata",
	"status_code_and_message",
	"special_status_message",
	"unimplemented_method",
	"unimplemented_service",
}

// cancelAfterBeginRace is how grpc-go's interop client fails
// cancel_after_begin when the server's OK overtakes the client's own
// cancel: CloseAndRecv sends END_STREAM while the cancellation is still on
// its way inside the client, the server answers OK, and the client sees
// code 0. It happened in 2 of 300 runs straight against the interop
// server, with no relay between them (2026-12-02), and once in CI's direct
// run. A relay that broke cancellation would fail the case every time,
// not once in a hundred runs, so one more run is asked of it.
const cancelAfterBeginRace = "got error code 0, want 1"

// interopCaseTimeout bounds one interop client run; each case takes well
// under a second on loopback.
const interopCaseTimeout = 30 * time.Second

// serverReadyTimeout bounds how long the interop server may take to listen.
const serverReadyTimeout = 15 * time.Second

// TestGRPCInterop runs the grpc-go interop client against the grpc-go
// interop server, directly and through the sidecar. The server listens on
// every interface and has no flag to bind 127.0.0.1 only, so each variant
// runs inside its own private network namespace.
func TestGRPCInterop(t *testing.T) {
	server := testtools.Bin(t, "grpc-interop-server")
	client := testtools.Bin(t, "grpc-interop-client")

	t.Run("direct", func(t *testing.T) {
		testtools.InNetns(t, func(t *testing.T) {
			addr := startInteropServer(t, server)
			runInteropCases(t, client, addr)
		})
	})

	t.Run("sidecar", func(t *testing.T) {
		// Built here, outside the namespace, where the go command can reach
		// its caches; the re-run inside finds it through the environment.
		sidecarBin := testtools.SidecarBin(t)
		testtools.InNetns(t, func(t *testing.T) {
			addr := startInteropServer(t, server)
			sidecar := testtools.StartSidecar(t, addr)
			runInteropCases(t, client, sidecar.Addr)
		}, testtools.SidecarBinEnv+"="+sidecarBin)
	})
}

// startInteropServer starts the interop server on a free port and returns
// its 127.0.0.1 address once it accepts connections.
func startInteropServer(t *testing.T, bin string) string {
	t.Helper()
	port := testtools.FreePort(t)
	p := testtools.StartProcess(t, context.Background(), bin, "--port", strconv.Itoa(port))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testtools.WaitTCP(t, addr, serverReadyTimeout, p.Done())
	return addr
}

// runInteropCases runs each interop case as a subtest against addr.
func runInteropCases(t *testing.T, client, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("interop target %q: %v", addr, err)
	}
	for _, tc := range interopCases {
		t.Run(tc, func(t *testing.T) {
			run := func() ([]byte, error) {
				ctx, cancel := context.WithTimeout(context.Background(), interopCaseTimeout)
				defer cancel()
				return exec.CommandContext(ctx, client,
					"--server_host", host,
					"--server_port", port,
					"--test_case", tc,
				).CombinedOutput()
			}
			out, err := run()
			if err != nil && tc == "cancel_after_begin" && bytes.Contains(out, []byte(cancelAfterBeginRace)) {
				// The client's own race, not the path's: run it once more.
				t.Logf("grpc-interop-client lost its own cancel race (%s); running the case again", bytes.TrimSpace(out))
				out, err = run()
			}
			if err != nil {
				t.Errorf("grpc-interop-client --test_case %s against %s: %v\n%s", tc, addr, err, out)
			}
		})
	}
}
