//go:build !hangup_pod

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	notifyv1 "github.com/hangup-dev/hangup/api/hangup/notify/v1"
	"github.com/hangup-dev/hangup/internal/demoapp"
	"github.com/hangup-dev/hangup/internal/h2raw"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/proxy"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

func newDemoCmd() *cobra.Command {
	var logLevel, jaeger string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo app, the sidecar and clients that disconnect in every way, all on 127.0.0.1",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger("text", logLevel)
			if err != nil {
				return err
			}
			if jaeger != "" {
				// The standard variables, so that everything else about
				// the export can still be set the OpenTelemetry way.
				_ = os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger)
				_ = os.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
				if os.Getenv("OTEL_SERVICE_NAME") == "" {
					_ = os.Setenv("OTEL_SERVICE_NAME", "hangup-demo")
				}
			}
			tel, err := telemetry.Setup(cmd.Context(), telemetry.Options{Version: version, Logger: log})
			if err != nil {
				return usageError{fmt.Errorf("invalid OpenTelemetry settings: %w", err)}
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tel.Shutdown(ctx)
			}()
			return runDemo(cmd.Context(), cmd.OutOrStdout(), log, wait, tel)
		},
	}
	cmd.Flags().StringVar(&jaeger, "jaeger", "", "send the demo's traces over OTLP/HTTP to this Jaeger (or collector), e.g. http://127.0.0.1:4318; the OTEL_* variables work too")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "sidecar log level: debug, info, warn or error")
	cmd.Flags().DurationVar(&wait, "wait", 3*time.Second, "how long each scenario waits for its events")
	return cmd
}

// demoEnv is the running demo: the app, the sidecar in front of it and the
// events the sidecar reports.
type demoEnv struct {
	app     *demoapp.App
	recv    *demoapp.Receiver // the app's DisconnectNotify service
	addr    string            // the sidecar
	grpc    testgrpc.TestServiceClient
	cleanup []func()
}

// scenario is one way for a client to behave; want is the events the
// sidecar must report, as "SCOPE REASON" strings.
type scenario struct {
	name string
	want []string
	run  func(ctx context.Context, d *demoEnv) error
}

func demoScenarios() []scenario {
	return []scenario{
		{"unary call completes", nil, func(ctx context.Context, d *demoEnv) error {
			_, err := d.grpc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 64})
			return err
		}},
		{"bidi stream completes", nil, func(ctx context.Context, d *demoEnv) error {
			s, err := d.grpc.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(echoRequest()); err != nil {
				return err
			}
			if _, err := s.Recv(); err != nil {
				return err
			}
			_ = s.CloseSend()
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("want EOF after CloseSend, got %v", err)
			}
			return nil
		}},
		{"client cancels its stream", []string{"STREAM RST_STREAM"}, func(ctx context.Context, d *demoEnv) error {
			sctx, cancel := context.WithCancel(ctx)
			s, err := d.grpc.FullDuplexCall(sctx)
			if err == nil {
				err = roundTrip(s)
			}
			cancel()
			return err
		}},
		{"client closes its connection mid-stream", []string{"STREAM CONNECTION_CLOSED", "CONNECTION CONNECTION_CLOSED"}, func(ctx context.Context, d *demoEnv) error {
			return rawScenario(d, func(c *h2raw.Client) error { return c.Close() })
		}},
		{"client connection reset (TCP RST)", []string{"STREAM CONNECTION_RESET", "CONNECTION CONNECTION_RESET"}, func(ctx context.Context, d *demoEnv) error {
			return rawScenario(d, func(c *h2raw.Client) error { return c.Reset() })
		}},
		{"client sends GOAWAY and leaves", []string{"STREAM GOAWAY", "CONNECTION GOAWAY"}, func(ctx context.Context, d *demoEnv) error {
			return rawScenario(d, func(c *h2raw.Client) error {
				if err := c.Framer.WriteGoAway(0, http2.ErrCodeNo, []byte("client shutting down")); err != nil {
					return err
				}
				return c.Close()
			})
		}},
		{"client sends a malformed frame", []string{"STREAM PROTOCOL_ERROR", "CONNECTION PROTOCOL_ERROR"}, func(ctx context.Context, d *demoEnv) error {
			return rawScenario(d, func(c *h2raw.Client) error {
				if err := c.Framer.WriteContinuation(1, true, []byte{0x82}); err != nil {
					return err
				}
				_, err := c.ReadUntil(2*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameGoAway })
				c.Close()
				return err
			})
		}},
	}
}

func echoRequest() *testgrpc.StreamingOutputCallRequest {
	return &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 32}}}
}

func roundTrip(s testgrpc.TestService_FullDuplexCallClient) error {
	if err := s.Send(echoRequest()); err != nil {
		return err
	}
	_, err := s.Recv()
	return err
}

// rawScenario opens a bidi stream with a raw client, waits for the app's
// answer (so the handler runs) and then lets leave end the connection.
func rawScenario(d *demoEnv, leave func(*h2raw.Client) error) error {
	c, err := h2raw.DialStreams(d.addr, 1)
	if err != nil {
		return err
	}
	defer c.Close()
	return leave(c)
}

// serveGRPC runs gs on a new 127.0.0.1 port until cleanup.
func (d *demoEnv) serveGRPC(gs *grpc.Server) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo listen: %w", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(ln) }()
	d.cleanup = append(d.cleanup, func() { gs.Stop(); <-done })
	return ln.Addr().String(), nil
}

func startDemo(log *slog.Logger, tel *telemetry.Telemetry) (*demoEnv, error) {
	d := &demoEnv{app: demoapp.New(256), recv: demoapp.NewReceiver(1024)}
	gs := grpc.NewServer(d.app.ServerOptions()...)
	d.app.Register(gs)
	appAddr, err := d.serveGRPC(gs)
	if err != nil {
		return nil, err
	}
	// The app serves DisconnectNotify on its own port, as a real app does.
	ns := grpc.NewServer()
	notifyv1.RegisterDisconnectNotifyServer(ns, d.recv)
	notifyAddr, err := d.serveGRPC(ns)
	if err != nil {
		d.close()
		return nil, err
	}
	notifier, err := notify.New(notify.Config{Addr: notifyAddr, Logger: log, OnDelivered: tel.OnDelivered})
	if err != nil {
		d.close()
		return nil, err
	}
	d.cleanup = append(d.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = notifier.Close(ctx)
	})

	srv, err := proxy.New(proxy.Config{
		Upstream:  proxy.Address{Network: "tcp", Address: appAddr},
		Logger:    log,
		Sink:      notifier,
		Telemetry: tel,
	})
	if err != nil {
		d.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.close()
		return nil, fmt.Errorf("sidecar listen: %w", err)
	}
	d.addr = ln.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	d.cleanup = append(d.cleanup, func() { _ = srv.Close(); <-served })

	cc, err := grpc.NewClient(d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.close()
		return nil, fmt.Errorf("grpc client: %w", err)
	}
	d.cleanup = append(d.cleanup, func() { _ = cc.Close() })
	d.grpc = testgrpc.NewTestServiceClient(cc)
	return d, nil
}

func (d *demoEnv) close() {
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
}

func runDemo(ctx context.Context, out io.Writer, log *slog.Logger, wait time.Duration, tel *telemetry.Telemetry) error {
	d, err := startDemo(log, tel)
	if err != nil {
		return err
	}
	defer d.close()
	fmt.Fprintf(out, "hangup demo: a gRPC app behind the sidecar at %s; the app receives DisconnectNotify events\n\n", d.addr)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tEVENT THE APP RECEIVED\tINITIATOR\tH2 CODE\tSTREAM\tMETHOD\tDETECTED\tNOTIFIED\tRESULT")
	failed := 0
	for _, sc := range demoScenarios() {
		drain(d.recv.Events)
		start := time.Now()
		err := sc.run(ctx, d)
		got := collect(d.recv.Events, len(sc.want), wait)
		result := "ok"
		if err != nil {
			result = "client error: " + err.Error()
		} else if !sameEvents(got, sc.want) {
			result = fmt.Sprintf("MISMATCH: want %v", sc.want)
		}
		if result != "ok" {
			failed++
		}
		if len(got) == 0 {
			fmt.Fprintf(tw, "%s\t(none)\t\t\t\t\t\t\t%s\n", sc.name, result)
		}
		for i, r := range got {
			name, e := sc.name, r.Event
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%d\t%s\t+%s\t+%s\t%s\n", name, e.Scope, e.Reason, e.Initiator,
				http2.ErrCode(e.HTTP2ErrorCode), e.StreamID, e.Method, e.DetectedAt.Sub(start).Round(time.Microsecond),
				r.At.Sub(start).Round(time.Microsecond), result)
		}
	}
	tw.Flush()
	fmt.Fprintf(out, "\n%d scenarios, %d failed\n", len(demoScenarios()), failed)
	if failed > 0 {
		return fmt.Errorf("%d demo scenarios did not report what they should", failed)
	}
	return nil
}

func drain(ch chan demoapp.Received) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// collect waits for n events, then a little longer for any extra ones, so
// that an unexpected event shows as a mismatch.
func collect(ch chan demoapp.Received, n int, wait time.Duration) []demoapp.Received {
	var got []demoapp.Received
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for len(got) < n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-deadline.C:
			return got
		}
	}
	grace := time.NewTimer(100 * time.Millisecond)
	defer grace.Stop()
	for {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-grace.C:
			return got
		}
	}
}

func sameEvents(got []demoapp.Received, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	var g []string
	for _, r := range got {
		g = append(g, r.Event.Scope.String()+" "+r.Event.Reason.String())
	}
	return strings.Join(g, ",") == strings.Join(want, ",")
}
