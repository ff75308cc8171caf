// Package mesh tests hangup behind a real HTTP/2 proxy that plays the
// mesh's part (Envoy in Istio, linkerd2-proxy in Linkerd): it terminates
// TLS, pools its clients onto its own connections to hangup and answers
// PINGs hop by hop. The tests show which client disconnects reach hangup
// through such a proxy, as docs/mesh.md tabulates.
package mesh

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(clientEnv); addr != "" {
		// A client process for the killed-client case: it opens a stream
		// and waits to be killed.
		os.Exit(runClientProcess(addr, os.Getenv(caEnv)))
	}
	goleak.VerifyTestMain(m)
}
