package proxy

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// conn is one relayed HTTP/2 connection: a client and its own connection to
// the app. Two forwarders run it, one per direction; each owns its socket's
// reads and hpack state, and each socket's writes belong to its wire. An
// idle connection runs no goroutine: both forwarders are parked.
type conn struct {
	// Immutable after newConn.
	srv      *Server
	id       string
	client   net.Conn
	app      net.Conn
	start    time.Time
	toApp    wire // by value: no allocation of their own per connection
	toClient wire
	up, down *forwarder
	metrics  *telemetry.Metrics // nil-safe
	span     *telemetry.Conn    // nil when tracing is off

	running   atomic.Int32   // forwarders not yet done
	timerRuns sync.WaitGroup // onTimer calls in progress

	// Peer settings and counters: written by one forwarder, read by the
	// other.
	appMaxFrame       atomic.Uint32 // the app's SETTINGS_MAX_FRAME_SIZE
	appHeaderTable    atomic.Uint32 // the app's SETTINGS_HEADER_TABLE_SIZE
	clientHeaderTable atomic.Uint32 // the client's SETTINGS_HEADER_TABLE_SIZE
	appMaxStreams     atomic.Uint32 // the app's SETTINGS_MAX_CONCURRENT_STREAMS
	bytesFromClient   atomic.Uint64
	bytesToClient     atomic.Uint64
	lastRead          atomic.Int64 // unix nanoseconds of the last batch from the client

	// Guarded by mu; methods that need it end in Locked.
	mu      sync.Mutex
	streams streamTable
	refuse  refusals // streams the app never sees
	// eventSeq numbers the connection's events. It sits in the padding
	// after refuse: conn must stay at most 568 bytes, since an object
	// over 512 bytes that holds pointers gets an 8-byte malloc header,
	// and 576 bytes is its size class.
	eventSeq uint32
	abuse    abuseCounters
	ending   ending // how the connection ended (disconnect.go)
	// The keepalive policy and its timer (keepalive.go), which also
	// drives the drain.
	ka      *keepalive.Policy
	timer   *time.Timer        // fires at ka.Deadline(), or earlier
	armed   time.Duration      // when timer fires, since start (8 bytes, not a time.Time's 24); 0 when not armed
	actions []keepalive.Action // policy actions to run after unlocking
}

// peer is the client's address. It is formatted when a log line, span or
// event needs it, from the address the socket keeps anyway, rather than
// held as a copy by every idle connection.
func (c *conn) peer() string { return c.client.RemoteAddr().String() }

// connSeq numbers this process's connections.
var connSeq atomic.Uint64

// newConnID returns "<incarnation>-<n>": the process's incarnation makes
// the ids unique among processes without a random read per connection, and
// tells the app which process a connection belonged to after a restart.
func newConnID() string {
	return event.Incarnation() + "-" + strconv.FormatUint(connSeq.Add(1), 36)
}

func newConn(srv *Server, client, app net.Conn) *conn {
	c := &conn{
		srv: srv, id: newConnID(), client: client, app: app, start: srv.cfg.Now(),
		toApp: wire{conn: app}, toClient: wire{conn: client},
		streams: newStreamTable(),
	}
	c.ka = keepalive.New(srv.cfg.Keepalive, c.start, nil)
	c.lastRead.Store(c.start.UnixNano())
	c.metrics = srv.cfg.Telemetry.Metrics()
	c.metrics.ConnOpened()
	c.span = srv.cfg.Telemetry.Tracer().StartConn(telemetry.ConnStart{ID: c.id, Peer: c.peer(), Start: c.start})
	c.appMaxFrame.Store(defaultMaxFrameSize)
	c.appHeaderTable.Store(defaultHeaderTableSize)
	c.clientHeaderTable.Store(defaultHeaderTableSize)
	c.appMaxStreams.Store(^uint32(0))
	c.up, c.down = newClientForwarder(c), newAppForwarder(c)
	for _, f := range []*forwarder{c.up, c.down} {
		sock, err := srv.poller.Register(f.src(), f.resume)
		if err != nil {
			if !errors.Is(err, park.ErrUnsupported) {
				srv.cfg.Logger.Debug("socket cannot park; its reads wait on a goroutine", "conn", c.id, "err", err)
			}
			// Only a forwarder that cannot park waits for bytes first.
			f.idle = newReadWaiter(f.src())
			continue
		}
		f.sock = sock
	}
	return c
}

// relay begins relaying. Each direction's forwarder runs on its own
// goroutine while its source has bytes and parks while it is quiet; the
// last to end tears the connection down. preface is what the client sent
// after the connection preface while it was being sniffed.
func (c *conn) relay(preface []byte) {
	c.mu.Lock()
	c.rearmLocked(c.start)
	c.mu.Unlock()
	if _, err := c.app.Write([]byte(clientPreface)); err != nil {
		c.noteEnd("app write failed: " + err.Error())
		for _, f := range []*forwarder{c.up, c.down} {
			if f.sock != nil {
				f.sock.Deregister()
			}
		}
		c.tearDown()
		return
	}
	c.running.Store(2)
	c.srv.wg.Add(2)
	c.up.start(preface)
	c.down.start(nil)
}

// forwarderDone is called by each forwarder once it has ended; the last
// one tears the connection down.
func (c *conn) forwarderDone() {
	if c.running.Add(-1) == 0 {
		c.tearDown()
	}
	c.srv.wg.Done()
}

// tearDown closes both sockets once neither direction reads them, ends the
// connection's span and logs it.
func (c *conn) tearDown() {
	log := c.srv.cfg.Logger
	c.stopTimer()
	_ = c.client.Close()
	_ = c.app.Close()
	c.srv.removeConn(c)

	c.mu.Lock()
	ended, opened := c.ending.how, c.streams.opened
	c.span.RTT(c.ka.RTT())
	c.span.End(c.srv.cfg.Now(), c.ending.reason, c.ending.who)
	c.mu.Unlock()
	c.metrics.ConnClosed()
	log.Info("connection closed", "conn", c.id, "peer", c.peer(),
		"duration", c.srv.cfg.Now().Sub(c.start).Round(time.Microsecond), "streams", opened,
		"bytes_from_client", c.bytesFromClient.Load(), "bytes_to_client", c.bytesToClient.Load(),
		"ended", ended)
}

// closeClient closes the client socket and wakes its forwarder if parked:
// the poller does not report a socket closed on this side.
func (c *conn) closeClient() {
	_ = c.client.Close()
	c.up.wake()
}
