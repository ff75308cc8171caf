// Package admin serves the sidecar's admin endpoints: /healthz, /readyz,
// /drain and whatever else the command mounts (such as /metrics).
//
// It knows nothing of the relay or of telemetry: the command passes in
// readiness and mounts the rest.
package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Checks answer the probes.
type Checks struct {
	// Live reports whether the process can serve; nil means always.
	// /healthz is what a native sidecar's startupProbe waits on.
	Live func() error
	// Ready reports whether traffic can flow (listener up, app reachable).
	Ready func(ctx context.Context) error
	// Drain starts the graceful drain (or joins one under way) and returns
	// once it is over, or with ctx's error. nil: no /drain endpoint.
	Drain func(ctx context.Context) error
	// DrainToken, when not empty, lets a request from outside the pod's
	// loopback drain: it must carry it in the DrainTokenHeader header.
	// Requests from loopback need none.
	DrainToken string
}

// DrainTokenHeader carries Checks.DrainToken on a GET /drain. The injector
// puts it in the app's preStop hook: the kubelet runs httpGet hooks against
// the pod's IP, not its loopback, and any pod can reach that address.
const DrainTokenHeader = "X-Hangup-Drain-Token"

// DrainPath is the drain endpoint (a GET: the kubelet's httpGet hooks send
// nothing else).
const DrainPath = "/drain"

// readyTimeout bounds one readiness check, below the kubelet's default 1s
// probe timeout.
const readyTimeout = 800 * time.Millisecond

// Handler returns the mux with /healthz and /readyz; more can be added to it.
func Handler(c Checks) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		answer(w, c.Live)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		answer(w, func() error {
			if c.Ready == nil {
				return nil
			}
			return c.Ready(ctx)
		})
	})
	if c.Drain != nil {
		mux.HandleFunc("GET "+DrainPath, func(w http.ResponseWriter, r *http.Request) {
			if err := c.allowDrain(r); err != nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, "drain refused: %v\n", err)
				return
			}
			answer(w, func() error { return c.Drain(r.Context()) })
		})
	}
	return mux
}

// allowDrain accepts a drain from the pod's loopback (the other containers
// of the pod), or from anywhere with the token: a drain stops the pod
// serving, so nobody else on the pod network may ask for one.
func (c Checks) allowDrain(r *http.Request) error {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && ap.Addr().Unmap().IsLoopback() {
		return nil
	}
	got := r.Header.Get(DrainTokenHeader)
	switch {
	case c.DrainToken == "":
		return fmt.Errorf("from %s: want a request from loopback (this sidecar has no drain token)", r.RemoteAddr)
	case got == "":
		return fmt.Errorf("from %s without the %s header: want a request from loopback or with the token the injector set", r.RemoteAddr, DrainTokenHeader)
	case subtle.ConstantTimeCompare([]byte(got), []byte(c.DrainToken)) != 1:
		return fmt.Errorf("from %s: wrong %s: want the token the injector set", r.RemoteAddr, DrainTokenHeader)
	}
	return nil
}

func answer(w http.ResponseWriter, check func() error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if check != nil {
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ok: %v\n", err)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr; Serve starts answering.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin serve: %w", err)
	}
	return nil
}

// Shutdown stops the server gracefully within ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
