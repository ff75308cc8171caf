// Package admin serves the sidecar's admin endpoints: /healthz, /readyz and
// whatever else the command mounts (such as /metrics).
//
// It knows nothing of the relay or of telemetry: the command passes in
// readiness and mounts the rest.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Checks answer the probes.
type Checks struct {
	// Live reports whether the process can serve; nil means always.
	// /healthz is what a native sidecar's startupProbe waits on.
	Live func() error
	// Ready reports whether traffic can flow (listener up, app reachable).
	Ready func(ctx context.Context) error
}

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
	return mux
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
