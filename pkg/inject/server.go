package inject

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// AdmissionHandler decides one admission request. It returns a response
// without UID; the server fills it in.
type AdmissionHandler interface {
	Admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
}

// AdmissionHandlerFunc adapts a function to AdmissionHandler.
type AdmissionHandlerFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Admit calls f.
func (f AdmissionHandlerFunc) Admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return f(ctx, req)
}

var _ AdmissionHandler = AdmissionHandlerFunc(nil)

// maxReviewBytes bounds a request body. The API server's own limit on an
// object is 3 MiB; the review wraps the object (twice on UPDATE).
const maxReviewBytes = 8 << 20

// AdmissionServer is a generic HTTPS server for admission/v1 webhooks. It
// knows nothing about pods: routes map URL paths to handlers.
type AdmissionServer struct {
	// Routes maps a URL path (e.g. /mutate) to its handler. Required.
	Routes map[string]AdmissionHandler
	// GetCertificate returns the serving certificate for each handshake, so
	// a rotated certificate is used without a restart. Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ShutdownTimeout bounds the graceful shutdown once ctx is done: the
	// API server's own call timeout (at most 30s) is the useful ceiling.
	// Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives one line per denial and per failure. Default: discard.
	Logger *slog.Logger
}

// Handler returns the HTTP handler: the routes plus /healthz.
func (s *AdmissionServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	for path, h := range s.Routes {
		mux.Handle("POST "+path, s.review(h))
	}
	return mux
}

func (s *AdmissionServer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// review decodes an AdmissionReview, calls h and encodes the answer with the
// same apiVersion and kind.
func (s *AdmissionServer) review(h AdmissionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, fmt.Sprintf("content type %q: want application/json", ct), http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil {
			http.Error(w, fmt.Sprintf("read review: %v", err), http.StatusBadRequest)
			return
		}
		if len(body) > maxReviewBytes {
			http.Error(w, fmt.Sprintf("review larger than %d bytes", maxReviewBytes), http.StatusRequestEntityTooLarge)
			return
		}
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &rev); err != nil {
			http.Error(w, fmt.Sprintf("decode AdmissionReview: %v", err), http.StatusBadRequest)
			return
		}
		if rev.Request == nil {
			http.Error(w, "AdmissionReview has no request", http.StatusBadRequest)
			return
		}
		resp := h.Admit(r.Context(), rev.Request)
		if resp == nil {
			resp = &admissionv1.AdmissionResponse{Allowed: true}
		}
		resp.UID = rev.Request.UID
		if !resp.Allowed && resp.Result != nil {
			s.logger().Info("denied", "path", r.URL.Path, "namespace", rev.Request.Namespace,
				"name", rev.Request.Name, "reason", resp.Result.Message)
		}
		out := admissionv1.AdmissionReview{TypeMeta: rev.TypeMeta, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(out); err != nil {
			s.logger().Warn("write admission response", "err", err)
		}
	})
}

// Serve serves HTTPS on ln until ctx is done, then shuts down gracefully,
// letting requests in flight finish within ShutdownTimeout. It closes ln.
func (s *AdmissionServer) Serve(ctx context.Context, ln net.Listener) error {
	if s.GetCertificate == nil {
		return errors.New("admission server: no GetCertificate")
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.GetCertificate,
		},
		ErrorLog: slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve admission on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		return fmt.Errorf("serve admission on %s: %w", ln.Addr(), serr)
	}
	if err != nil {
		return fmt.Errorf("shut down admission server: %w", err)
	}
	return nil
}

// CertReloader serves a certificate and key from files and reloads them when
// either file changes, as cert-manager's Secret mount rotates them in place.
// A failed reload keeps the last good pair.
type CertReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// NewCertReloader loads the pair once, so that a missing or bad file fails
// at start and not at the first handshake. logger may be nil.
func NewCertReloader(certFile, keyFile string, logger *slog.Logger) (*CertReloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the pair if a file's stamp changed. Callers hold r.mu or own r.
func (r *CertReloader) reload() error {
	cs, err := stamp(r.certFile)
	if err != nil {
		return fmt.Errorf("stat certificate: %w", err)
	}
	ks, err := stamp(r.keyFile)
	if err != nil {
		return fmt.Errorf("stat key: %w", err)
	}
	if r.cert != nil && cs == r.certStat && ks == r.keyStat {
		return nil
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certStat, r.keyStat = &c, cs, ks
	return nil
}

// GetCertificate is a tls.Config.GetCertificate. Two stats per handshake
// cost little next to the handshake, and need no watcher goroutine.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reload(); err != nil {
		// Mid-rotation the pair can be inconsistent for a moment.
		r.logger.Warn("certificate reload failed, serving the previous one", "err", err)
	}
	return r.cert, nil
}
