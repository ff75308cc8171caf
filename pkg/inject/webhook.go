package inject

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	admregv1 "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/redirect"
)

// URL paths of the webhook. The chart registers two webhooks with disjoint
// namespace selectors, so the injector learns a namespace's label from the
// path it is called on and needs no permission to read namespaces.
const (
	// PathMutate serves pods in namespaces without hangup.dev/inject=enabled:
	// only pods annotated hangup.dev/inject: "true" are injected.
	PathMutate = "/mutate"
	// PathMutateNamespaceEnabled serves pods in namespaces labelled
	// hangup.dev/inject=enabled: every pod not annotated "false" is injected.
	PathMutateNamespaceEnabled = "/mutate-namespace-enabled"
)

// ServerConfig configures Serve, the `sidecar inject` command.
type ServerConfig struct {
	// Addr is the HTTPS listen address. Default ":" and DefaultWebhookPort. Ignored when
	// Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr (tests
	// pass a 127.0.0.1:0 listener). Serve closes it.
	Listener net.Listener
	// CertDir holds tls.crt and tls.key (a cert-manager Secret mount); they
	// are reloaded when they change. Empty: self-managed mode, where Serve
	// makes its own CA and serving certificate in memory and adds the CA to
	// the caBundle of WebhookConfigName.
	CertDir string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle
	// Serve keeps up to date in self-managed mode. Required in that mode.
	WebhookConfigName string
	// Hosts are the DNS names or IPs of the self-managed serving
	// certificate, e.g. hangup-inject.hangup.svc. Required in that mode.
	Hosts []string
	// CertValidity of the self-managed certificate; it is renewed when a
	// third of it is left. Default 8760h (a year), minimum 1h.
	CertValidity time.Duration
	// CABundleResync is how often the caBundle is checked and restored (a
	// `helm upgrade` may reset it). Default DefaultCABundleResync, minimum 1s.
	CABundleResync time.Duration
	// NativeSidecars is "auto" (ask the API server's version: 1.29 and later
	// have them), "true" or "false". Default "auto".
	NativeSidecars string
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster config.
	// RestConfig, when set, wins.
	Kubeconfig string
	RestConfig *rest.Config
	// Sidecar holds the defaults of injected sidecars. Sidecar.Image is
	// required unless SidecarConfigFile is set.
	Sidecar Config
	// SidecarConfigFile, when set, is read with LoadConfig and replaces
	// Sidecar (the chart mounts its ConfigMap at /etc/hangup/sidecar.yaml).
	SidecarConfigFile string
	// ShutdownTimeout bounds the graceful shutdown. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger; default: discard.
	Logger *slog.Logger
}

func (c *ServerConfig) defaults() error {
	if c.Addr == "" {
		c.Addr = ":" + strconv.Itoa(int(DefaultWebhookPort))
	}
	if c.CertValidity == 0 {
		c.CertValidity = 365 * 24 * time.Hour
	}
	if c.CertValidity < time.Hour {
		return fmt.Errorf("cert validity %s: want at least 1h", c.CertValidity)
	}
	if c.CABundleResync == 0 {
		c.CABundleResync = DefaultCABundleResync
	}
	if c.CABundleResync < time.Second {
		return fmt.Errorf("caBundle resync %s: want at least 1s", c.CABundleResync)
	}
	if c.NativeSidecars == "" {
		c.NativeSidecars = DefaultNativeSidecars
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SidecarConfigFile != "" {
		sc, err := LoadConfig(c.SidecarConfigFile)
		if err != nil {
			return err
		}
		c.Sidecar = sc
	}
	if c.CertDir == "" && (c.WebhookConfigName == "" || len(c.Hosts) == 0) {
		return errors.New("self-managed certificates (no cert dir) need the webhook configuration name and the serving host names")
	}
	return c.Sidecar.Validate()
}

// Validate checks a Config for values the sidecar cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Image == "":
		return errors.New("sidecar image: want an image reference")
	case c.UID <= 0:
		return fmt.Errorf("sidecar uid %d: want a non-root uid", c.UID)
	case c.ProxyPort <= 0 || c.AdminPort <= 0 || c.ProxyPort == c.AdminPort:
		return fmt.Errorf("sidecar ports %d and %d: want two different ports", c.ProxyPort, c.AdminPort)
	case c.KeepaliveTime < keepalive.MinDuration || c.KeepaliveTimeout < keepalive.MinDuration:
		return fmt.Errorf("keepalive time %s and timeout %s: want at least %s", c.KeepaliveTime, c.KeepaliveTimeout, keepalive.MinDuration)
	case !validRTTInterval(c.RTTInterval):
		return fmt.Errorf("rtt interval %s: want %s", c.RTTInterval, rttIntervalWant)
	case c.Mode != ModePort && c.Mode != ModeRedirect:
		return fmt.Errorf("mode %q: want port or redirect", c.Mode)
	case !slices.Contains([]redirect.Backend{redirect.BackendAuto, redirect.BackendNFTables, redirect.BackendIPTables}, redirect.Backend(c.RedirectBackend)):
		return fmt.Errorf("redirect backend %q: want auto, nftables or iptables", c.RedirectBackend)
	case c.BinaryPath == "":
		return errors.New("sidecar binary path: want the path in the image")
	}
	if _, err := parseNotifyAddr("notify-addr", c.NotifyAddr); err != nil {
		return fmt.Errorf("notify address %q: want host:port", c.NotifyAddr)
	}
	return nil
}

// Serve runs the injector until ctx is done.
func Serve(ctx context.Context, cfg ServerConfig) error {
	if err := cfg.defaults(); err != nil {
		return fmt.Errorf("inject config: %w", err)
	}
	log := cfg.Logger

	rc := cfg.RestConfig
	needClient := cfg.NativeSidecars == "auto" || cfg.CertDir == ""
	if rc == nil && needClient {
		var err error
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return fmt.Errorf("kubernetes client config: %w", err)
		}
	}

	var native bool
	switch cfg.NativeSidecars {
	case "true":
		native = true
	case "false":
	case "auto":
		var err error
		if native, err = nativeSidecarsSupported(rc); err != nil {
			return err
		}
	default:
		return fmt.Errorf("native sidecars %q: want auto, true or false", cfg.NativeSidecars)
	}
	log.Info("sidecar placement", "native", native)

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Addr, err)
		}
	}

	srv := &AdmissionServer{
		Routes: map[string]AdmissionHandler{
			PathMutate:                 &podMutator{cfg: cfg.Sidecar, native: native, log: log},
			PathMutateNamespaceEnabled: &podMutator{cfg: cfg.Sidecar, native: native, nsEnabled: true, log: log},
		},
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.CertDir != "" {
		r, err := NewCertReloader(filepath.Join(cfg.CertDir, "tls.crt"), filepath.Join(cfg.CertDir, "tls.key"), log)
		if err != nil {
			ln.Close()
			return err
		}
		srv.GetCertificate = r.GetCertificate
	} else {
		client, err := admregv1.NewForConfig(rc)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admissionregistration client: %w", err)
		}
		m := &selfManaged{cfg: cfg, client: client}
		first, err := NewSelfSigned(cfg.Hosts, time.Now(), cfg.CertValidity)
		if err != nil {
			ln.Close()
			return err
		}
		m.current.Store(first)
		// The webhook configuration may not exist yet (a chart install
		// creates everything at once): serve anyway, and let the loop
		// retry soon.
		if err := m.renew(ctx, time.Now()); err != nil {
			log.Warn("caBundle not updated yet; retrying", "err", err)
			m.retry = true
		}
		srv.GetCertificate = m.getCertificate
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.loop(ctx)
		}()
	}
	log.Info("serving admission", "addr", ln.Addr().String())
	return srv.Serve(ctx, ln)
}

// nativeSidecarsSupported asks the API server's version through discovery.
func nativeSidecarsSupported(rc *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return false, fmt.Errorf("discovery client: %w", err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("get API server version: %w", err)
	}
	return versionAtLeast(v.Major, v.Minor, 1, 29)
}

// versionAtLeast compares a discovery version, whose minor may carry a
// suffix such as "29+" on managed clusters.
func versionAtLeast(major, minor string, wantMajor, wantMinor int) (bool, error) {
	ma, err1 := strconv.Atoi(strings.TrimRight(major, "+"))
	mi, err2 := strconv.Atoi(strings.TrimRight(minor, "+"))
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("API server version %q.%q: want numeric major and minor", major, minor)
	}
	return ma > wantMajor || ma == wantMajor && mi >= wantMinor, nil
}

// selfManaged holds the self-signed certificate and keeps the caBundle.
type selfManaged struct {
	cfg    ServerConfig
	client admregv1.MutatingWebhookConfigurationsGetter

	current atomic.Pointer[SelfSigned]
	retry   bool // set before loop starts: the first caBundle update failed
}

func (m *selfManaged) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &m.current.Load().Cert, nil
}

// renew makes a new certificate when a third of its life is left, and makes
// sure the caBundle trusts the current CA. A new CA goes into the bundle
// before the server switches to its certificate; until then the old one,
// still valid, is served.
func (m *selfManaged) renew(ctx context.Context, now time.Time) error {
	cur := m.current.Load()
	next := cur
	if cur.NotAfter.Sub(now) < m.cfg.CertValidity/3 {
		var err error
		if next, err = NewSelfSigned(m.cfg.Hosts, now, m.cfg.CertValidity); err != nil {
			return err
		}
	}
	if err := EnsureCABundle(ctx, m.client, m.cfg.WebhookConfigName, next.CAPEM, now); err != nil {
		return err
	}
	if next != cur {
		m.current.Store(next)
		m.cfg.Logger.Info("serving a new self-signed certificate", "notAfter", next.NotAfter)
	}
	return nil
}

// loop re-checks the caBundle every CABundleResync, and after a failure
// sooner: from 1s, doubling up to CABundleResync.
func (m *selfManaged) loop(ctx context.Context) {
	backoff := time.Second
	next := m.cfg.CABundleResync
	if m.retry {
		next = min(backoff, m.cfg.CABundleResync)
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next = m.cfg.CABundleResync
		if err := m.renew(ctx, time.Now()); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.cfg.Logger.Warn("caBundle upkeep failed; retrying", "err", err, "in", backoff)
			next = min(backoff, m.cfg.CABundleResync)
			backoff *= 2
		} else {
			backoff = time.Second
		}
		t.Reset(next)
	}
}

// podMutator is the thin glue from admission to Patch.
type podMutator struct {
	cfg       Config
	native    bool
	nsEnabled bool
	log       *slog.Logger
}

func (p *podMutator) Admit(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(http.StatusBadRequest, fmt.Sprintf("decode pod: %v", err))
	}
	var nsLabels map[string]string
	if p.nsEnabled {
		nsLabels = map[string]string{LabelInject: LabelInjectEnabled}
	}
	ops, err := Patch(Request{Pod: &pod, NamespaceLabels: nsLabels, NativeSidecars: p.native, DrainToken: NewDrainToken()}, p.cfg)
	if err != nil {
		return deny(http.StatusUnprocessableEntity, err.Error())
	}
	if ops == nil {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, fmt.Sprintf("encode patch: %v", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp := &admissionv1.AdmissionResponse{Allowed: true, Patch: body, PatchType: &pt}
	if names := OwnPreStop(&pod); len(names) > 0 {
		// kubectl shows warnings to whoever created the pod; a controller
		// that created it only logs them, hence the log line too.
		note := drainHookNote(names)
		resp.Warnings = []string{note}
		if p.log != nil {
			p.log.Info("no drain hook", "namespace", req.Namespace, "pod", podName(&pod), "why", note)
		}
	}
	return resp
}

func deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{
		Allowed: false,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg},
	}
}
