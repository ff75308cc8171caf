package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/proxy"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// TestPrefaceTimeout opens connections that send nothing, or half of the
// HTTP/2 preface, also after a TLS handshake: the relay closes each once
// Config.PrefaceTimeout has passed and counts it. Before the deadline
// existed they stayed open for ever, each with a goroutine.
func TestPrefaceTimeout(t *testing.T) {
	const conns = 20
	cert, pool := selfSigned(t)
	tests := []struct {
		name string
		tls  bool
		send string
	}{
		{"nothing", false, ""},
		{"half a preface", false, "PRI * HTTP/2.0\r\n"},
		{"nothing after TLS", true, ""},
		{"half a preface after TLS", true, "PRI * HTTP/2.0\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel, err := telemetry.Setup(context.Background(), telemetry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			metrics := httptest.NewServer(tel.MetricsHandler())
			t.Cleanup(metrics.Close)
			_, appAddr := startApp(t)
			r := startRelay(t, appAddr, func(c *proxy.Config) {
				c.PrefaceTimeout = 200 * time.Millisecond
				c.Telemetry = tel
				if tt.tls {
					c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
				}
			})
			closed := make(chan error, conns)
			for range conns {
				c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close() })
				if tt.tls {
					tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "hangup.test", NextProtos: []string{"h2"}})
					if err := tc.Handshake(); err != nil {
						t.Fatalf("TLS handshake: %v", err)
					}
					c = tc
				}
				if _, err := io.WriteString(c, tt.send); err != nil {
					t.Fatal(err)
				}
				go func() {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, err := c.Read(make([]byte, 1))
					closed <- err
				}()
			}
			for i, err := range testtools.Receive(t, closed, conns, 15*time.Second) {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("connection %d: read %v, want EOF from the relay closing it", i, err)
				}
			}
			got := testtools.ScrapeMetrics(t, metrics.URL)
			if n := got[`hangup_abuse_goaways_total{kind=preface_timeout}`]; n != conns {
				t.Fatalf("hangup_abuse_goaways_total{kind=preface_timeout} = %v, want %d (metrics %v)", n, conns, got)
			}
		})
	}
}
