package proxy

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/keepalive"
	"github.com/hangup-dev/hangup/pkg/notify"
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
	peer     string
	start    time.Time
	toApp    *wire
	toClient *wire

	timerRuns sync.WaitGroup // onTimer calls in progress

	up, down *forwarder   // immutable after newConn
	running  atomic.Int32 // forwarders not yet ended

	// Written by one forwarder, read by the other.
	appMaxFrame       atomic.Uint32 // the app's SETTINGS_MAX_FRAME_SIZE
	appHeaderTable    atomic.Uint32 // the app's SETTINGS_HEADER_TABLE_SIZE
	clientHeaderTable atomic.Uint32 // the client's SETTINGS_HEADER_TABLE_SIZE
	appMaxStreams     atomic.Uint32 // the app's SETTINGS_MAX_CONCURRENT_STREAMS
	bytesFromClient   atomic.Uint64
	bytesToClient     atomic.Uint64
	lastRead          atomic.Int64 // unix nanoseconds of the last batch from the client

	metrics *telemetry.Metrics // nil-safe
	span    *telemetry.Conn    // nil when tracing is off

	mu         sync.Mutex
	streams    streamTable
	ka         *keepalive.Policy
	timer      *time.Timer        // fires at ka.Deadline(), or earlier
	armed      time.Time          // when timer fires; zero when not armed
	actions    []keepalive.Action // policy actions to run after unlocking
	finished   bool               // serve is done: the timer must not re-arm
	refuse     refusals           // streams the app never sees
	abuse      abuseCounters
	eventSeq   uint32
	goAway     *goAwayInfo   // the client's GOAWAY, if it sent one
	clientGone bool          // events for the client's loss were made
	appGone    bool          // the app ended the connection: no client event
	ended      string        // how the connection ended, for the log
	endReason  notify.Reason // why, when it was a disconnect (for the span)
	endWho     notify.Initiator
}

type goAwayInfo struct {
	lastStreamID uint32
	code         http2.ErrCode
	debug        string
}

var (
	connPrefix = newConnPrefix()
	connSeq    atomic.Uint64
)

// newConnPrefix makes this process's connection ids unique among processes
// without a random read per connection.
func newConnPrefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

func newConnID() string {
	return connPrefix + "-" + strconv.FormatUint(connSeq.Add(1), 36)
}

func newConn(srv *Server, client, app net.Conn) *conn {
	c := &conn{
		srv: srv, id: newConnID(), client: client, app: app,
		peer: client.RemoteAddr().String(), start: srv.cfg.Now(),
		toApp: &wire{conn: app}, toClient: &wire{conn: client},
		streams: newStreamTable(),
	}
	c.ka = keepalive.New(srv.cfg.Keepalive, c.start, nil)
	c.lastRead.Store(c.start.UnixNano())
	c.metrics = srv.cfg.Telemetry.Metrics()
	c.metrics.ConnOpened()
	c.span = srv.cfg.Telemetry.Tracer().StartConn(telemetry.ConnStart{ID: c.id, Peer: c.peer, Start: c.start})
	c.appMaxFrame.Store(defaultMaxFrameSize)
	c.appHeaderTable.Store(defaultHeaderTableSize)
	c.clientHeaderTable.Store(defaultHeaderTableSize)
	c.appMaxStreams.Store(^uint32(0))
	c.up = &forwarder{c: c, toApp: true, src: client, dst: c.toApp,
		dec: newHeaderDecoder(srv.cfg.MaxHeaderListSize), enc: newRequestEncoder()}
	c.down = &forwarder{c: c, src: app, dst: c.toClient,
		dec: newHeaderDecoder(srv.cfg.MaxHeaderListSize), maxBuf: frameHeaderLen + maxFrameSizeLimit}
	for _, f := range []*forwarder{c.up, c.down} {
		sock, err := srv.poller.Register(f.src, f.resume)
		if err != nil {
			if !errors.Is(err, park.ErrUnsupported) {
				srv.cfg.Logger.Debug("socket cannot park; its reads wait on a goroutine", "conn", c.id, "err", err)
			}
			// Only a forwarder that cannot park waits for bytes first.
			f.idle = newReadWaiter(f.src)
			continue
		}
		f.sock = sock
	}
	return c
}

// relay begins relaying. Each direction's forwarder runs on its own
// goroutine while its source has bytes and parks while it is quiet; the
// last to end finishes the connection. preface is what the client sent
// after the connection preface while it was being sniffed.
func (c *conn) relay(preface []byte) {
	c.mu.Lock()
	c.rearmLocked(c.start)
	c.mu.Unlock()
	if _, err := c.app.Write([]byte(clientPreface)); err != nil {
		c.setEnded("app write failed: " + err.Error())
		for _, f := range []*forwarder{c.up, c.down} {
			if f.sock != nil {
				f.sock.Deregister()
			}
		}
		c.finish()
		return
	}
	c.running.Store(2)
	c.srv.wg.Add(2)
	c.up.start(preface)
	c.down.start(nil)
}

// directionEnded is called by each forwarder once it has ended; the last
// one finishes the connection.
func (c *conn) directionEnded() {
	if c.running.Add(-1) == 0 {
		c.finish()
	}
	c.srv.wg.Done()
}

// finish closes both sockets once neither direction reads them, ends the
// connection's span and logs it.
func (c *conn) finish() {
	log := c.srv.cfg.Logger
	c.stopTimer()
	_ = c.client.Close()
	_ = c.app.Close()
	c.srv.removeConn(c)

	c.mu.Lock()
	ended, opened := c.ended, c.streams.opened
	c.span.End(c.srv.cfg.Now(), c.endReason, c.endWho)
	c.mu.Unlock()
	c.metrics.ConnClosed()
	log.Info("connection closed", "conn", c.id, "peer", c.peer,
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

// upstreamEnded handles the end of the client → app direction.
func (c *conn) upstreamEnded(err error) {
	var ce connError
	var we writeError
	switch {
	case errors.As(err, &ce):
		c.setEnded("client protocol error: " + ce.Reason)
		if ce.Kind != "" {
			c.metrics.AbuseGoAway(ce.Kind)
		}
		c.mu.Lock()
		last := c.streams.lastClientID
		c.mu.Unlock()
		_ = c.toClient.inject(appendGoAway(nil, last, ce.Code, ce.Reason))
		c.lose(notify.ReasonProtocolError, notify.InitiatorSidecar, uint32(ce.Code), ce.Reason)
		c.closeClient()
	case errors.As(err, &we):
		c.setEnded("app write failed: " + we.err.Error())
		c.appLost("app connection failed")
		c.closeClient()
	case errors.Is(err, io.EOF):
		c.setEnded("client closed")
		c.mu.Lock()
		ga := c.goAway
		c.mu.Unlock()
		if ga != nil {
			c.lose(notify.ReasonGoAway, notify.InitiatorClient, uint32(ga.code), ga.debug)
		} else {
			c.lose(notify.ReasonConnectionClosed, notify.InitiatorClient, 0, "")
		}
	case isLocalClose(err), errors.Is(err, os.ErrDeadlineExceeded):
		// The other direction ended first, or Server.Close closed the socket.
	default:
		c.setEnded("client read failed: " + err.Error())
		c.lose(notify.ReasonConnectionReset, notify.InitiatorClient, 0, "")
		c.closeClient()
	}
	// Whatever ended this direction, the other gets Linger to finish.
	c.down.linger(c.srv.cfg.Linger)
}

// downstreamEnded handles the end of the app → client direction.
func (c *conn) downstreamEnded(err error) {
	var ce connError
	var we writeError
	switch {
	case errors.As(err, &we):
		if isLocalClose(we.err) {
			break
		}
		c.setEnded("client write failed: " + we.err.Error())
		c.lose(notify.ReasonConnectionReset, notify.InitiatorClient, 0, "")
		c.closeClient()
	case errors.As(err, &ce):
		c.setEnded("app protocol error: " + ce.Reason)
		c.appLost(ce.Reason)
		c.closeClient()
	case isLocalClose(err), errors.Is(err, os.ErrDeadlineExceeded):
		// The client side ended first and the app had its linger time.
	default:
		if errors.Is(err, io.EOF) {
			c.setEnded("app closed")
		} else {
			c.setEnded("app read failed: " + err.Error())
		}
		c.appLost("app closed the connection")
		c.toClient.closeWrite()
	}
	c.up.linger(c.srv.cfg.Linger)
}

func isLocalClose(err error) bool { return errors.Is(err, net.ErrClosed) }

func (c *conn) setEnded(how string) {
	c.mu.Lock()
	if c.ended == "" {
		c.ended = how
	}
	c.mu.Unlock()
}

// appLost tells the client that the app ended the connection, and makes
// no event: nothing the app causes is a client's disconnect. Each stream
// whose handler still ran gets RST_STREAM(INTERNAL_ERROR), not
// REFUSED_STREAM: it was processed, and a refusal would invite a retry of
// a call that ran. Then GOAWAY names the last stream that may have been
// processed (never above the app's own GOAWAY, RFC 9113 §6.8).
func (c *conn) appLost(debug string) {
	now := c.srv.cfg.Now()
	c.mu.Lock()
	if c.appGone {
		c.mu.Unlock()
		return
	}
	c.appGone = true
	var frames []byte
	for _, s := range c.streams.open {
		if !s.appDone() {
			frames = appendRSTStream(frames, s.id, http2.ErrCodeInternal)
			s.span.RSTStream(now, uint32(http2.ErrCodeInternal), notify.InitiatorApp)
		}
		c.retireStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
	}
	last := c.streams.lastClientID
	if c.refuse.active {
		last = min(last, c.refuse.line)
	}
	c.mu.Unlock()
	code := http2.ErrCodeNo
	if len(frames) > 0 {
		code = http2.ErrCodeInternal
	}
	_ = c.toClient.inject(appendGoAway(frames, last, code, "hangup: "+debug))
}

// lose records that the client is gone: one event per stream whose handler
// still runs, one for the connection when it ended abnormally, and — in
// band, so the app's own gRPC library cancels those handlers —
// RST_STREAM(CANCEL) for each such stream, then GOAWAY, then EOF.
func (c *conn) lose(reason notify.Reason, who notify.Initiator, code uint32, debug string) {
	now := c.srv.cfg.Now()
	c.mu.Lock()
	if c.clientGone || c.appGone {
		c.mu.Unlock()
		return
	}
	c.clientGone = true
	var events []notify.Event
	var frames []byte
	for _, s := range c.streams.open {
		if s.appDone() {
			c.retireStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
			continue
		}
		events = append(events, c.streamEventLocked(s, reason, who, code, debug, now))
		frames = appendRSTStream(frames, s.id, http2.ErrCodeCancel)
		switch reason {
		case notify.ReasonKeepaliveTimeout:
			s.span.KeepaliveTimeout(now)
		case notify.ReasonGoAway:
			if c.goAway != nil {
				s.span.GoAway(now, uint32(c.goAway.code), c.goAway.lastStreamID, c.goAway.debug, who)
			}
		}
		c.retireStreamLocked(s, now, reason, who)
	}
	abnormal := len(events) > 0 || reason == notify.ReasonConnectionReset ||
		reason == notify.ReasonProtocolError || reason == notify.ReasonKeepaliveTimeout || reason == notify.ReasonPingAbuse
	if abnormal {
		events = append(events, c.connEventLocked(reason, who, code, debug, now))
		c.endReason, c.endWho = reason, who
	}
	last := c.streams.lastClientID
	c.mu.Unlock()

	for _, ev := range events {
		c.publish(ev)
	}
	frames = appendGoAway(frames, last, http2.ErrCodeNo, "hangup: client gone")
	_ = c.toApp.inject(frames)
	c.toApp.closeWrite()
}

// openStreamLocked starts the stream a request HEADERS read at now opens; nil
// when the id cannot open one.
func (c *conn) openStreamLocked(id uint32, fields []hpack.HeaderField, now time.Time) *stream {
	s := c.streams.start(id, now)
	if s == nil {
		return nil
	}
	s.method = fieldValue(fields, ":path")
	s.authority = fieldValue(fields, ":authority")
	c.ka.StreamOpened(now)
	c.metrics.StreamOpened()
	if c.span != nil {
		s.span = c.span.StartStream(telemetry.StreamStart{
			Traceparent: fieldValue(fields, "traceparent"), Tracestate: fieldValue(fields, "tracestate"),
			Method: s.method, Authority: s.authority, StreamID: id, Start: now,
		})
	}
	for _, name := range c.srv.cfg.NotifyHeaders {
		if v := fieldValue(fields, name); v != "" {
			if s.headers == nil {
				s.headers = make(map[string]string, len(c.srv.cfg.NotifyHeaders))
			}
			s.headers[name] = v
		}
	}
	return s
}

// retireIfClosedLocked retires a stream once both sides have ended it, the last of them in
// a batch read at now.
func (c *conn) retireIfClosedLocked(s *stream, now time.Time) {
	if s.state == stateClosed {
		c.retireStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
		c.queueActionsLocked(now, c.ka.StreamClosed(now))
	}
}

// resetStreamLocked retires a stream that a RST_STREAM ended; reason is set when
// that was a disconnect.
func (c *conn) resetStreamLocked(s *stream, now time.Time, reason notify.Reason, who notify.Initiator) {
	c.retireStreamLocked(s, now, reason, who)
	c.queueActionsLocked(now, c.ka.StreamClosed(now))
}

// retireStreamLocked ends a stream's span and metric and removes it from the table;
// s must not be used afterwards.
func (c *conn) retireStreamLocked(s *stream, now time.Time, reason notify.Reason, who notify.Initiator) {
	s.endSpan(now, reason, who)
	c.streams.remove(s)
	c.metrics.StreamClosed()
}

// onClientResetLocked handles RST_STREAM from the client; it fails when the reset
// overdraws the Rapid Reset budget.
func (c *conn) onClientResetLocked(id uint32, code http2.ErrCode, events *[]notify.Event) error {
	s := c.streams.get(id)
	if s == nil {
		return nil
	}
	now := c.srv.cfg.Now()
	var err error
	if !s.answered && now.Sub(s.startedAt) < prematureResetWindow {
		err = c.spendResetLocked(now)
	}
	s.span.RSTStream(now, uint32(code), notify.InitiatorClient)
	if s.appDone() {
		c.resetStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
	} else {
		*events = append(*events, c.streamEventLocked(s, notify.ReasonRSTStream, notify.InitiatorClient, uint32(code), "", now))
		c.resetStreamLocked(s, now, notify.ReasonRSTStream, notify.InitiatorClient)
	}
	return err
}

// onAppResetLocked handles RST_STREAM from the app: the app's choice, not a
// disconnect.
func (c *conn) onAppResetLocked(id uint32, code http2.ErrCode) {
	c.refuse.appResetLocked(id)
	if s := c.streams.get(id); s != nil {
		c.srv.cfg.Logger.Debug("app reset stream", "conn", c.id, "stream", id, "code", code.String(), "initiator", notify.InitiatorApp.String())
		now := c.srv.cfg.Now()
		s.span.RSTStream(now, uint32(code), notify.InitiatorApp)
		c.resetStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
	}
}

// onClientGoAwayLocked records the client's GOAWAY: the streams open when its
// connection then ends are lost to it. (A client's last-stream-id names
// server-initiated streams, which gRPC never opens.)
func (c *conn) onClientGoAwayLocked(last uint32, code http2.ErrCode, debug []byte) {
	c.goAway = &goAwayInfo{lastStreamID: last, code: code, debug: string(debug)}
	c.span.GoAway(c.srv.cfg.Now(), uint32(code), last, c.goAway.debug, notify.InitiatorClient)
}

// onAppGoAwayLocked records the app's GOAWAY. The streams above its
// last-stream-id were never processed: they leave the table with no
// event (the client retries them), and new ones are refused.
func (c *conn) onAppGoAwayLocked(last uint32, code http2.ErrCode, debug []byte) {
	c.srv.cfg.Logger.Debug("app sent GOAWAY", "conn", c.id, "last_stream", last, "code", code.String(),
		"debug", string(debug), "initiator", notify.InitiatorApp.String())
	now := c.srv.cfg.Now()
	c.span.GoAway(now, uint32(code), last, string(debug), notify.InitiatorApp)
	c.refuse.goAwayLocked(last)
	for id, s := range c.streams.open {
		if id > last {
			c.resetStreamLocked(s, now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
		}
	}
}

// ownPingAckLocked handles a PING ACK from the client and reports whether it
// answers the relay's own PING (then it is consumed, not forwarded).
func (c *conn) ownPingAckLocked(data [8]byte) bool {
	if !c.ka.IsOwnPing(data) {
		return false
	}
	now := c.srv.cfg.Now()
	c.queueActionsLocked(now, c.ka.PingAckReceived(now, data))
	return true
}

// onClientPingLocked judges a PING from the client.
func (c *conn) onClientPingLocked() {
	now := c.srv.cfg.Now()
	c.queueActionsLocked(now, c.ka.PingReceived(now))
}

func (c *conn) streamEventLocked(s *stream, reason notify.Reason, who notify.Initiator, code uint32, debug string, now time.Time) notify.Event {
	ev := c.connEventLocked(reason, who, code, debug, now)
	ev.Scope = notify.ScopeStream
	ev.StreamID = s.id
	ev.Method = s.method
	ev.Authority = s.authority
	ev.Headers = s.headers
	ev.StartedAt = s.startedAt
	ev.BytesFromClient = s.bytesFromClient
	ev.BytesToClient = s.bytesToClient
	ev.TraceID, ev.SpanID, ev.TraceSampled = s.span.TraceID(), s.span.SpanID(), s.span.Sampled()
	return ev
}

// connEventLocked makes a connection-scope event.
func (c *conn) connEventLocked(reason notify.Reason, who notify.Initiator, code uint32, debug string, now time.Time) notify.Event {
	c.eventSeq++
	return notify.Event{
		ID:              c.id + "-" + strconv.FormatUint(uint64(c.eventSeq), 36),
		Scope:           notify.ScopeConnection,
		Reason:          reason,
		Initiator:       who,
		HTTP2ErrorCode:  code,
		ConnectionID:    c.id,
		PeerAddress:     c.peer,
		StartedAt:       c.start,
		DetectedAt:      now,
		GoAwayDebug:     debug,
		BytesFromClient: c.bytesFromClient.Load(),
		BytesToClient:   c.bytesToClient.Load(),
	}
}

func (c *conn) publish(ev notify.Event) {
	c.srv.cfg.Logger.Info("disconnect", "event", ev.ID, "scope", ev.Scope.String(), "reason", ev.Reason.String(),
		"initiator", ev.Initiator.String(), "code", http2.ErrCode(ev.HTTP2ErrorCode).String(),
		"conn", ev.ConnectionID, "stream", ev.StreamID, "method", ev.Method, "peer", ev.PeerAddress,
		"bytes_from_client", ev.BytesFromClient, "bytes_to_client", ev.BytesToClient)
	c.metrics.Disconnect(ev.Reason, ev.Initiator)
	if ev.Scope == notify.ScopeStream {
		// How long the client had been silent when it was found gone.
		c.metrics.DetectionLatency(ev.DetectedAt.Sub(time.Unix(0, c.lastRead.Load())))
	}
	if c.srv.cfg.Sink != nil {
		c.srv.cfg.Sink.Publish(ev)
	}
}
