package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hangup-dev/hangup/internal/coldpages"
	"github.com/hangup-dev/hangup/pkg/admin"
	"github.com/hangup-dev/hangup/pkg/grace"
	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
	"github.com/hangup-dev/hangup/pkg/ports"
	"github.com/hangup-dev/hangup/pkg/proxy"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// proxyOptions are the flags of `sidecar proxy`; every one can also come
// from HANGUP_<NAME> or the --config file.
type proxyOptions struct {
	listen, upstream, admin string
	mode                    string
	tlsCert, tlsKey         string
	logFormat, logLevel     string
	maxHeaderListSize       uint32
	drainTimeout            time.Duration
	drainToken              string
	prefaceTimeout          time.Duration
	tcpIdleTimeout          time.Duration
	rttHeader               bool
	releaseStartupPages     bool
	keepalive               keepalive.Config
	limits                  proxy.Limits
	notify                  notify.Config
	watch                   watch.Config
	reconnectGrace          string // grace.ParseRules syntax
	sessionHeader           string
}

func newProxyCmd() *cobra.Command {
	var o proxyOptions
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Relay HTTP/2 (gRPC) clients to the app and report their disconnects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxy(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":"+strconv.Itoa(ports.Proxy), "address clients connect to (host:port)")
	f.StringVar(&o.upstream, "upstream", "", "the app's address: host:port or unix:///path (required in port mode)")
	f.StringVar(&o.mode, "mode", "port", "port: clients connect to --listen; redirect: init-redirect sends the pod's inbound connections here and each goes to 127.0.0.1 (::1 for IPv6) and the port the client dialled")
	f.StringVar(&o.admin, "admin", "127.0.0.1:"+strconv.Itoa(ports.Admin), "address of /healthz and /readyz")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for TLS on the listen side (ALPN h2, http/1.1); needs --tls-key")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	addLogFlags(f, &o.logFormat, &o.logLevel, "text")
	f.Uint32Var(&o.maxHeaderListSize, "max-header-list-size", proxy.DefaultMaxHeaderListSize, "largest header block accepted from a client, in bytes (minimum 4096)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", defaultDrainTimeout, "on SIGTERM/SIGINT: how long streams may run on after the graceful GOAWAY; later ones end with reason SHUTDOWN")
	f.StringVar(&o.drainToken, "drain-token", "", "lets GET /drain on the admin port come from outside the pod's loopback with this value in the "+admin.DrainTokenHeader+" header (the injector sets it for the app's preStop hook); empty: loopback only")
	f.DurationVar(&o.prefaceTimeout, "preface-timeout", proxy.DefaultPrefaceTimeout, "a new connection (after TLS) must send the HTTP/2 preface, or for plain TCP its first bytes, within this; else it is closed, logged and counted (minimum 1ms)")
	f.DurationVar(&o.tcpIdleTimeout, "tcp-idle-timeout", proxy.DefaultTCPIdleTimeout, "a plain-TCP (not HTTP/2) connection that moves no byte either way for this long is closed (minimum 1ms)")
	f.BoolVar(&o.releaseStartupPages, "release-startup-pages", true, "once listening, and again once the start-up event reached the app, unmap the binary's pages that only start-up used (Linux; they stay in the page cache and what runs again is mapped back): about half the idle RSS")
	addKeepaliveFlags(f, &o.keepalive)
	f.BoolVar(&o.rttHeader, "rtt-header", proxy.DefaultRTTHeader, "add "+proxy.HeaderRTT+", the connection's smoothed round-trip time in microseconds, to every request toward the app once it is measured")
	f.IntVar(&o.limits.MaxPrematureResets, "max-premature-resets", proxy.DefaultMaxPrematureResets, "Rapid Reset defence: a client may reset this many streams before the app answered them (within 1s of opening), refilled at this many per second; overdrawn, the connection is closed")
	f.IntVar(&o.limits.MaxEmptyFrames, "max-empty-frames", proxy.DefaultMaxEmptyFrames, "empty DATA frames in a row before the connection is closed")
	f.IntVar(&o.limits.MaxSettingsPerSecond, "max-settings-per-second", proxy.DefaultMaxSettingsPerSecond, "SETTINGS frames a client may send per second")
	addNotifyFlags(f, &o.notify)
	addWatchFlags(f, &o.watch)
	addGraceFlags(f, &o)
	return cmd
}

// proxyConfig turns the options into a proxy.Config, or a usage error that
// names the flag, the value and what is expected.
func (o proxyOptions) proxyConfig(log *slog.Logger) (proxy.Config, error) {
	cfg := proxy.Config{Logger: log, MaxHeaderListSize: o.maxHeaderListSize, Keepalive: o.keepalive, Limits: o.limits,
		PrefaceTimeout: o.prefaceTimeout, TCPIdleTimeout: o.tcpIdleTimeout, RTTHeader: o.rttHeader}
	if err := o.keepalive.Validate(); err != nil {
		return cfg, usageError{fmt.Errorf("invalid --%w", firstError(err))}
	}
	for name, v := range map[string]int{"max-premature-resets": o.limits.MaxPrematureResets,
		"max-empty-frames": o.limits.MaxEmptyFrames, "max-settings-per-second": o.limits.MaxSettingsPerSecond} {
		if v < 1 {
			return cfg, usageError{fmt.Errorf("invalid --%s %d: want at least 1", name, v)}
		}
	}
	for name, v := range map[string]time.Duration{"preface-timeout": o.prefaceTimeout, "tcp-idle-timeout": o.tcpIdleTimeout} {
		if v < time.Millisecond {
			return cfg, usageError{fmt.Errorf("invalid --%s %s: want a duration of 1ms or more", name, v)}
		}
	}
	if o.drainTimeout < 0 {
		return cfg, usageError{fmt.Errorf("invalid --drain-timeout %s: want a duration of 0s or more", o.drainTimeout)}
	}
	if err := o.notify.Validate(); err != nil {
		return cfg, usageError{fmt.Errorf("invalid --%w", firstError(err))}
	}
	if err := o.watch.Validate(); err != nil {
		return cfg, usageError{fmt.Errorf("invalid --%w", firstError(err))}
	}
	if _, err := o.graceConfig(log); err != nil {
		return cfg, err
	}
	for name := range o.notify.HeaderAllowList() {
		cfg.NotifyHeaders = append(cfg.NotifyHeaders, name)
	}
	switch o.mode {
	case "port":
	case "redirect":
		cfg.Redirect = true
	default:
		return cfg, usageError{fmt.Errorf("invalid --mode %q: want port or redirect", o.mode)}
	}
	if o.upstream == "" && !cfg.Redirect {
		return cfg, usageError{errors.New("missing --upstream: want the app's address, host:port or unix:///path (also HANGUP_UPSTREAM)")}
	}
	if o.upstream != "" {
		var err error
		if cfg.Upstream, err = proxy.ParseAddress("upstream", o.upstream); err != nil {
			return cfg, usageError{err}
		}
	}
	if a, err := proxy.ParseAddress("listen", o.listen); err != nil || a.Network != "tcp" {
		return cfg, usageError{fmt.Errorf("invalid --listen %q: want host:port such as :%d", o.listen, ports.Proxy)}
	}
	if _, err := proxy.ParseAddress("admin", o.admin); err != nil {
		return cfg, usageError{err}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return cfg, usageError{fmt.Errorf("invalid --tls-cert %q / --tls-key %q: give both or neither", o.tlsCert, o.tlsKey)}
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return cfg, usageError{fmt.Errorf("invalid --tls-cert %q / --tls-key %q: want a readable PEM certificate and its key: %v", o.tlsCert, o.tlsKey, err)}
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// graceConfig is reconnect grace's config, with empty Rules when
// --reconnect-grace is not set; or a usage error naming the flag.
func (o proxyOptions) graceConfig(log *slog.Logger) (grace.Config, error) {
	rules, err := grace.ParseRules(o.reconnectGrace)
	if err != nil {
		return grace.Config{}, usageError{fmt.Errorf("invalid --reconnect-grace %q: %w", o.reconnectGrace, err)}
	}
	if rules.Empty() {
		return grace.Config{}, nil
	}
	if o.sessionHeader == "" {
		return grace.Config{}, usageError{fmt.Errorf("missing --session-header: --reconnect-grace is set; want %s", grace.SessionHeaderSyntax)}
	}
	if err := grace.CheckSessionHeader(o.sessionHeader); err != nil {
		return grace.Config{}, usageError{fmt.Errorf("invalid --session-header %q: %w", o.sessionHeader, err)}
	}
	return grace.Config{Rules: rules, SessionHeader: strings.ToLower(o.sessionHeader), Logger: log}, nil
}

func runProxy(ctx context.Context, o proxyOptions) error {
	log, err := newLogger(o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	cfg, err := o.proxyConfig(log)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Options{Version: version, Logger: log})
	if err != nil {
		return usageError{fmt.Errorf("invalid OpenTelemetry settings (OTEL_* variables): %w", err)}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), notifyFlushGrace)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	cfg.Telemetry = tel
	o.notify.Logger = log
	o.notify.OnDelivered = tel.OnDelivered
	notifier, err := notify.New(o.notify)
	if err != nil {
		return usageError{err}
	}
	if err := tel.Metrics().ObserveNotifier(notifier.Stats); err != nil {
		log.Warn("notify metrics unavailable", "err", err)
	}
	cfg.Sink = notifier
	// abandon stops the notifier of a sidecar that failed to start without
	// delivering what it queued (its start-up event): with the app down it
	// would wait for ever, and the next process names its own incarnation.
	abandon := func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = notifier.Close(ctx)
	}
	var hub *watch.Hub // pull mode: numbers and buffers events, then hands them to the notifier
	if o.watch.Addr != "" {
		o.watch.Logger = log
		if hub, err = watch.New(o.watch, notifier); err != nil {
			abandon()
			return usageError{err}
		}
		cfg.Sink = hub
		if err := tel.Metrics().ObserveWatch(hub.Counters); err != nil {
			log.Warn("watch metrics unavailable", "err", err)
		}
	}
	// Reconnect grace holds events before both push and Watch get them;
	// Close sends what it holds, unchanged, before the notifier stops.
	gcfg, err := o.graceConfig(log)
	if err != nil {
		abandon()
		return err
	}
	var held *grace.Grace
	if !gcfg.Rules.Empty() {
		held = grace.New(gcfg, cfg.Sink)
		defer held.Close() // on the failed starts; after the drain it has run already
		cfg.Sink, cfg.Sessions = held, held
		if err := tel.Metrics().ObserveGrace(held.Stats); err != nil {
			log.Warn("reconnect grace metrics unavailable", "err", err)
		}
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		abandon()
		return usageError{err}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		abandon()
		return fmt.Errorf("listen on --listen %s: %w", o.listen, err)
	}
	watchDone := make(chan error, 1)
	if hub != nil {
		wln, err := watch.Listen(o.watch.Addr)
		if err != nil {
			_ = ln.Close()
			abandon()
			return err
		}
		go func() { watchDone <- hub.Serve(wln) }()
		defer func() {
			hub.Close()
			if werr := <-watchDone; werr != nil {
				log.Warn("watch server ended with an error", "err", werr)
			}
		}()
	}
	drain := newDrainer()
	mux := admin.Handler(admin.Checks{
		Live: func() error {
			if !srv.Serving() {
				return errors.New("listener not accepting")
			}
			return nil
		},
		Ready: func(ctx context.Context) error {
			if !srv.Serving() {
				return errors.New("listener not accepting")
			}
			return srv.CheckUpstream(ctx)
		},
		Drain:      drain.request,
		DrainToken: o.drainToken,
	})
	mux.Handle("GET /metrics", tel.MetricsHandler())
	adm, err := admin.Listen(o.admin, mux, log)
	if err != nil {
		_ = ln.Close()
		abandon()
		return err
	}
	log.Info("hangup proxy started", "version", versionString(), "listen", ln.Addr().String(),
		"upstream", cfg.Upstream.String(), "mode", o.mode, "admin", adm.Addr().String(), "tls", cfg.TLS != nil,
		"notify", o.notify.Addr, "watch", o.watch.Addr, "tracing", tel.Tracing())

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- adm.Serve() }()
	if o.releaseStartupPages {
		// Start-up is over: what the idle proxy runs from now on is faulted
		// back in from the page cache (see internal/coldpages).
		releasePages(log, "listening")
		// Once more when the start-up event has reached the app: its
		// delivery (a gRPC channel, often retried while the app starts)
		// maps pages that only each disconnect's delivery uses again.
		rctx, stopRelease := context.WithCancel(ctx)
		released := make(chan struct{})
		go func() {
			defer close(released)
			if notifier.Flush(rctx) == nil {
				releasePages(log, "start-up event delivered")
			}
		}()
		defer func() { stopRelease(); <-released }()
	}
	received := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case <-drain.requested:
		log.Info("draining: asked on the admin port's /drain (the app's preStop hook); the sidecar keeps running until SIGTERM")
	case err = <-errc:
		received++
	}
	// Drain: graceful GOAWAY to every client, streams get drainTimeout,
	// then the events of the last connections get a moment to go out.
	sctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout+notifyFlushGrace)
	defer cancel()
	if derr := srv.Shutdown(sctx, o.drainTimeout); derr != nil {
		log.Warn("connections left at the end of the drain were closed", "err", derr)
	}
	if held != nil {
		held.Close()
	}
	nerr := notifier.Close(sctx)
	if nerr != nil {
		log.Warn("events left undelivered at shutdown", "err", nerr)
	} else {
		log.Info("drain over: the app acknowledged every event")
	}
	drain.finish(nerr)
	// Drained on request: the app is still stopping, and a native sidecar
	// that exited now would be restarted by the kubelet. Stay up (the
	// admin port answers) until the kubelet's SIGTERM; the relay's Serve
	// has returned nil by now.
	for err == nil && ctx.Err() == nil && received < 2 {
		select {
		case <-ctx.Done():
			log.Info("shutting down after the drain", "cause", context.Cause(ctx))
		case err = <-errc:
			received++
		}
	}
	actx, acancel := context.WithTimeout(context.Background(), notifyFlushGrace)
	defer acancel()
	_ = adm.Shutdown(actx)
	// Both goroutines have returned once their servers are closed.
	for ; received < 2; received++ {
		if e := <-errc; err == nil {
			err = e
		}
	}
	return err
}

// releasePages drops the mappings of the binary's pages that only
// start-up used (internal/coldpages); after says which part of start-up
// just ended.
func releasePages(log *slog.Logger, after string) {
	if n, err := coldpages.Release(); err != nil {
		log.Warn("start-up pages not released", "after", after, "err", err)
	} else {
		log.Debug("start-up pages released", "after", after, "bytes", n)
	}
}

// drainer is the drain a GET /drain asks for: the first request starts it,
// every request waits for its end.
type drainer struct {
	once      sync.Once
	requested chan struct{}
	done      chan struct{}
	err       error // set before done is closed
}

func newDrainer() *drainer {
	return &drainer{requested: make(chan struct{}), done: make(chan struct{})}
}

// request starts the drain and waits until it is over and its events went
// out (or were given up, which it reports).
func (d *drainer) request(ctx context.Context) error {
	d.once.Do(func() { close(d.requested) })
	select {
	case <-d.done:
		if d.err != nil {
			return fmt.Errorf("drained, but %w", d.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the drain: %w", ctx.Err())
	}
}

// finish ends the drain with the outcome of the event flush.
func (d *drainer) finish(err error) {
	d.err = err
	close(d.done)
}

// notifyFlushGrace is how long events may take to go out after the drain.
const notifyFlushGrace = 2 * time.Second

// defaultDrainTimeout is --drain-timeout's default: how long streams may
// run on after the graceful GOAWAY of a SIGTERM. With notifyFlushGrace it
// must end inside Kubernetes' default terminationGracePeriodSeconds (30s),
// or the kubelet's SIGKILL loses the last events; proxy_test.go checks it.
// It is declared here because only this command drains (proxy.Server's
// Shutdown takes the bound as an argument).
const defaultDrainTimeout = 15 * time.Second

// addKeepaliveFlags binds the connection policy's flags to c, with
// keepalive's defaults (grpc-go's words and meanings).
func addKeepaliveFlags(f *pflag.FlagSet, c *keepalive.Config) {
	d := keepalive.DefaultConfig()
	f.DurationVar(&c.Time, "keepalive-time", d.Time, "ping a client after this long without a frame from it (minimum 1s)")
	f.DurationVar(&c.Timeout, "keepalive-timeout", d.Timeout, "a client that answers neither the ping nor anything else this long is dead: KEEPALIVE_TIMEOUT (minimum 1s)")
	f.DurationVar(&c.MinTime, "keepalive-min-time", d.MinTime, "clients pinging more often than this get strikes; past 2, GOAWAY too_many_pings (PING_ABUSE)")
	f.BoolVar(&c.PermitWithoutStream, "keepalive-permit-without-stream", d.PermitWithoutStream, "allow client pings while no stream is open")
	f.DurationVar(&c.MaxConnectionIdle, "max-connection-idle", d.MaxConnectionIdle, "graceful GOAWAY (max_idle) after this long without streams; 0 is off")
	f.DurationVar(&c.MaxConnectionAge, "max-connection-age", d.MaxConnectionAge, "graceful GOAWAY (max_age) after this long, ±10% jitter; 0 is off")
	f.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", d.MaxConnectionAgeGrace, "after the max-age GOAWAY, cut off streams still open this much later (MAX_AGE); 0 waits for them")
	f.DurationVar(&c.RTTInterval, "rtt-interval", d.RTTInterval, "also ping a client this long after the previous ping, only to measure its round-trip time, never while one is unanswered; no common gRPC client limits server pings (README, Round-trip time); 0 is off, else minimum 1s")
}

// addNotifyFlags binds the DisconnectNotify delivery flags to c, with
// notify's defaults.
func addNotifyFlags(f *pflag.FlagSet, c *notify.Config) {
	d := notify.DefaultConfig()
	*c = d
	f.StringVar(&c.Addr, "notify-addr", d.Addr, "the app's DisconnectNotify server: host:port or unix:///path; empty disables")
	f.DurationVar(&c.Timeout, "notify-timeout", d.Timeout, "timeout of one Notify call")
	f.IntVar(&c.QueueSize, "notify-queue-size", d.QueueSize, "most events waiting for delivery; beyond it the oldest are dropped and counted")
	f.IntVar(&c.BatchMax, "notify-batch-max", d.BatchMax, "most events in one Notify call; a call also carries at most 1 MiB of encoded events")
	f.DurationVar(&c.BatchDelay, "notify-batch-delay", d.BatchDelay, "0 (default): send an event at once when no call is in flight, batch only what arrives during a call; >0: hold every partial batch this long for more events (fewer calls, more latency)")
	f.StringSliceVar(&c.Headers, "notify-headers", nil, "request headers copied into events (comma-separated)")
}

// addWatchFlags binds pull mode's flags (DisconnectWatch.Watch served by
// the sidecar) to c, with watch's defaults.
func addWatchFlags(f *pflag.FlagSet, c *watch.Config) {
	f.StringVar(&c.Addr, "watch-addr", "", "serve DisconnectWatch.Watch here for apps that read events as clients: host:port or unix:///path, e.g. "+
		watch.SuggestedAddr+"; empty (default) disables; works beside --notify-addr")
	f.IntVar(&c.Buffer, "watch-buffer", watch.DefaultBuffer, "latest events kept for Watch clients to resume from; older ones are reported to them as missed")
}

// addGraceFlags binds reconnect grace's flags (pkg/grace), off by default.
func addGraceFlags(f *pflag.FlagSet, o *proxyOptions) {
	f.StringVar(&o.reconnectGrace, "reconnect-grace", "", "hold the events of a stream whose connection was lost (KEEPALIVE_TIMEOUT, CONNECTION_CLOSED, CONNECTION_RESET) this long per method, and send one RESUMED event instead if a stream with the same --session-header value arrives in time: "+
		grace.RulesSyntax+"; empty (default) holds nothing")
	f.StringVar(&o.sessionHeader, "session-header", "", "the request header whose value names a client's session for --reconnect-grace, e.g. x-session-id (required with it)")
}

// firstError keeps one line of a joined error: the first problem is enough
// to act on.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0]
	}
	return err
}
