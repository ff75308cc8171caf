package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/ports"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// Defaults of Config, in one place.
const (
	// DefaultMaxHeaderListSize bounds a header block, compressed and decoded
	// (bytes). gRPC metadata rarely exceeds a few KiB; 1 MiB leaves room and
	// still stops a CONTINUATION flood early.
	DefaultMaxHeaderListSize = 1 << 20
	// DefaultDialTimeout bounds dialling the app.
	DefaultDialTimeout = 5 * time.Second
	// DefaultLinger is how long one side may stay open after the other has
	// closed: time for the last frames to drain.
	DefaultLinger = 5 * time.Second
	// DefaultParkAfter is how long a socket must be quiet before its
	// forwarder gives up its goroutine. Shorter costs a busy connection
	// park/resume cycles between bursts; longer keeps an idle connection's
	// goroutine (and stack) that much longer.
	DefaultParkAfter = 10 * time.Millisecond
	// DefaultTLSHandshakeTimeout bounds a client's TLS handshake.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultPrefaceTimeout bounds how long a new connection (after its
	// TLS handshake) may take to send the HTTP/2 preface or, for plain
	// TCP, its first bytes. A client that connects and sends nothing
	// otherwise holds a socket and a goroutine outside every idle limit.
	DefaultPrefaceTimeout = 10 * time.Second
	// DefaultTCPIdleTimeout bounds a plain-TCP (not HTTP/2) connection
	// that moves no byte either way: such a connection has no keepalive.
	DefaultTCPIdleTimeout = time.Hour
	// DefaultRTTHeader is Config.RTTHeader: off, so that the app's requests
	// carry only the ids unless it asks for x-hangup-rtt-us.
	DefaultRTTHeader = false
)

// Config is what a Server needs. The zero value of each optional field
// means its default.
type Config struct {
	// Upstream is the app's address; required unless Redirect.
	Upstream Address
	// Redirect is redirect mode: each connection goes to 127.0.0.1 and the
	// port its client dialled before an init-redirect rule sent it here
	// (SO_ORIGINAL_DST); Upstream, when set, serves connections that were
	// not redirected.
	Redirect bool
	// TLS, when set, terminates TLS on the listen side; ALPN "h2" selects
	// the frame relay, anything else the plain TCP relay.
	TLS *tls.Config
	// MaxHeaderListSize bounds one header block, in bytes.
	// Default DefaultMaxHeaderListSize; minimum 4096.
	MaxHeaderListSize uint32
	// DialTimeout bounds dialling the app. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// Linger is how long a side may stay open after the other closed.
	// Default DefaultLinger.
	Linger time.Duration
	// PrefaceTimeout bounds how long a client, once connected (and past
	// TLS), may take to send the HTTP/2 connection preface or, on the
	// plain TCP relay, its first bytes; then the connection is closed,
	// logged and counted. Default DefaultPrefaceTimeout; minimum 1ms.
	PrefaceTimeout time.Duration
	// TCPIdleTimeout closes a plain-TCP (not HTTP/2) relayed connection
	// after this long with no byte in either direction.
	// Default DefaultTCPIdleTimeout; minimum 1ms.
	TCPIdleTimeout time.Duration
	// ParkAfter is how long a socket is quiet before its forwarder parks
	// and an idle connection holds no goroutine. Default DefaultParkAfter;
	// minimum 1ms.
	ParkAfter time.Duration
	// Keepalive is the connection policy: keepalive PINGs and timeout, ping
	// enforcement, idle and age limits. The zero value means
	// keepalive.DefaultConfig().
	Keepalive keepalive.Config
	// Limits are the abuse limits; zero fields mean their defaults.
	Limits Limits
	// NotifyHeaders names request headers copied into disconnect events.
	NotifyHeaders []string
	// RTTHeader adds x-hangup-rtt-us, the connection's smoothed round-trip
	// time, to every request toward the app once it is measured.
	// Default DefaultRTTHeader.
	RTTHeader bool
	// Sink receives disconnect events; nil logs them only.
	Sink event.Sink
	// Sessions, when set, is reconnect grace (pkg/grace, itself in the
	// Sink chain): a stream on a method it graces carries the value of its
	// session header in its events (Event.SessionKey) and is announced to
	// it when it opens. nil costs nothing per stream.
	Sessions Sessions
	// Telemetry receives spans and metrics; nil records nothing.
	Telemetry *telemetry.Telemetry
	// Logger is the structured logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sessions is what the relay needs of reconnect grace (*grace.Grace).
// Its methods must not block: they run on the data path.
type Sessions interface {
	// Graced says whether streams of method (a :path) have a grace; it
	// must not allocate.
	Graced(method string) bool
	// SessionHeader is the lower-case request header whose value is a
	// stream's session key.
	SessionHeader() string
	// StreamOpened announces a stream on a graced method that carries a
	// session key.
	StreamOpened(method, sessionKey, connID string, streamID uint32)
}

func (c Config) withDefaults() Config {
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = DefaultParkAfter
	}
	if c.PrefaceTimeout == 0 {
		c.PrefaceTimeout = DefaultPrefaceTimeout
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Keepalive == (keepalive.Config{}) {
		c.Keepalive = keepalive.DefaultConfig()
	}
	c.Limits = c.Limits.withDefaults()
	for i, h := range c.NotifyHeaders {
		c.NotifyHeaders[i] = strings.ToLower(strings.TrimSpace(h))
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Upstream.Address == "" && !c.Redirect {
		return fmt.Errorf("upstream is required: want host:port or unix:///path of the app")
	}
	if c.Redirect && !redirectSupported {
		return fmt.Errorf("redirect mode needs Linux (SO_ORIGINAL_DST): use --upstream on %s", runtime.GOOS)
	}
	if c.MaxHeaderListSize != 0 && c.MaxHeaderListSize < 4096 {
		return fmt.Errorf("max-header-list-size %d is below the minimum 4096", c.MaxHeaderListSize)
	}
	if c.ParkAfter != 0 && c.ParkAfter < time.Millisecond {
		return fmt.Errorf("park-after %v is below the minimum 1ms", c.ParkAfter)
	}
	if c.PrefaceTimeout != 0 && c.PrefaceTimeout < time.Millisecond {
		return fmt.Errorf("preface-timeout %v is below the minimum 1ms", c.PrefaceTimeout)
	}
	if c.TCPIdleTimeout != 0 && c.TCPIdleTimeout < time.Millisecond {
		return fmt.Errorf("tcp-idle-timeout %v is below the minimum 1ms", c.TCPIdleTimeout)
	}
	if c.Keepalive != (keepalive.Config{}) {
		if err := c.Keepalive.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Address is a dialable or listenable address: TCP host:port or a unix
// socket path.
type Address struct {
	Network string // "tcp" or "unix"
	Address string
}

func (a Address) String() string {
	if a.Network == "unix" {
		return "unix://" + a.Address
	}
	return a.Address
}

// ParseAddress parses "host:port" or "unix:///path". name is the flag the
// value came from, for the error message.
func ParseAddress(name, value string) (Address, error) {
	if path, ok := strings.CutPrefix(value, "unix://"); ok {
		if !strings.HasPrefix(path, "/") {
			return Address{}, fmt.Errorf("invalid --%s %q: want unix:///absolute/path", name, value)
		}
		return Address{Network: "unix", Address: path}, nil
	}
	_, port, err := net.SplitHostPort(value)
	if err != nil || port == "" {
		return Address{}, fmt.Errorf("invalid --%s %q: want host:port (such as 127.0.0.1:8080 or :%d) or unix:///path", name, value, ports.Proxy)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return Address{}, fmt.Errorf("invalid --%s %q: port %q is not a port number", name, value, port)
	}
	return Address{Network: "tcp", Address: value}, nil
}
