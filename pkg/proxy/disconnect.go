package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/pkg/event"
)

// This file decides and reports how a connection or stream ended: which
// side went away, whether that is a client's disconnect (events, in-band
// RST_STREAM(CANCEL) toward the app) or the app's doing (no event), and
// what the log and the connection's span say.

// ending is how a connection ended. Each side's loss is reported once, the
// first cause found is the one logged, and once torn down the connection
// arms no timer. Guarded by conn.mu.
type ending struct {
	how        string          // how the connection ended, for the log; "" until known
	reason     event.Reason    // why, when it was a disconnect (for the span)
	who        event.Initiator // who caused it
	goAway     *goAwayInfo     // the client's GOAWAY, if it sent one
	clientGone bool            // events for the client's loss were made
	appGone    bool            // the app ended the connection: no client event
	tornDown   bool            // both directions are done: the timer must not re-arm
}

// noteLocked records how the connection ended unless a cause is known.
func (e *ending) noteLocked(how string) {
	if e.how == "" {
		e.how = how
	}
}

// clientGoneLocked marks the client's loss reported; false when it, or the
// app's, already was (then nothing more is reported).
func (e *ending) clientGoneLocked() bool {
	if e.clientGone || e.appGone {
		return false
	}
	e.clientGone = true
	return true
}

// appGoneLocked marks the app's loss reported; false when it already was.
func (e *ending) appGoneLocked() bool {
	if e.appGone {
		return false
	}
	e.appGone = true
	return true
}

type goAwayInfo struct {
	lastStreamID uint32
	code         http2.ErrCode
	debug        string
}

// upstreamEnded handles the end of the client → app direction.
func (c *conn) upstreamEnded(err error) {
	var ce connError
	var we writeError
	switch {
	case errors.As(err, &ce):
		c.noteEnd("client protocol error: " + ce.Reason)
		if ce.Kind != "" {
			c.metrics.AbuseGoAway(ce.Kind)
		}
		c.mu.Lock()
		last := c.streams.lastClientID
		c.mu.Unlock()
		_ = c.toClient.inject(appendGoAway(nil, last, ce.Code, ce.Reason))
		c.clientLost(event.ReasonProtocolError, event.InitiatorSidecar, uint32(ce.Code), ce.Reason)
		c.closeClient()
	case errors.As(err, &we):
		c.noteEnd("app write failed: " + we.err.Error())
		c.appLost("app connection failed")
		c.closeClient()
	case errors.Is(err, io.EOF):
		c.noteEnd("client closed")
		c.clientLost(event.ReasonConnectionClosed, event.InitiatorClient, 0, "")
	case isLocalClose(err), errors.Is(err, os.ErrDeadlineExceeded):
		// The other direction ended first, or Server.Close closed the socket.
	default:
		c.noteEnd("client read failed: " + err.Error())
		c.clientLost(event.ReasonConnectionReset, event.InitiatorClient, 0, "")
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
		c.noteEnd("client write failed: " + we.err.Error())
		c.clientLost(event.ReasonConnectionReset, event.InitiatorClient, 0, "")
		c.closeClient()
	case errors.As(err, &ce):
		c.noteEnd("app protocol error: " + ce.Reason)
		c.appLost(ce.Reason)
		c.closeClient()
	case isLocalClose(err), errors.Is(err, os.ErrDeadlineExceeded):
		// The client side ended first and the app had its linger time.
	default:
		if errors.Is(err, io.EOF) {
			c.noteEnd("app closed")
		} else {
			c.noteEnd("app read failed: " + err.Error())
		}
		c.appLost("app closed the connection")
		c.toClient.closeWrite()
	}
	c.up.linger(c.srv.cfg.Linger)
}

func isLocalClose(err error) bool { return errors.Is(err, net.ErrClosed) }

// noteEnd records how the connection ended, when no cause is known yet.
func (c *conn) noteEnd(how string) {
	c.mu.Lock()
	c.ending.noteLocked(how)
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
	if !c.ending.appGoneLocked() {
		c.mu.Unlock()
		return
	}
	var frames []byte
	for _, s := range c.streams.open {
		if !s.appDone() {
			frames = appendRSTStream(frames, s.id, http2.ErrCodeInternal)
			s.span.RSTStream(now, uint32(http2.ErrCodeInternal), event.InitiatorApp)
		}
		c.retireStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
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

// clientLost records that the client is gone: one event per stream whose handler
// still runs, one for the connection when it ended abnormally, and — in
// band, so the app's own gRPC library cancels those handlers —
// RST_STREAM(CANCEL) for each such stream, then GOAWAY, then EOF.
//
// A client that sent GOAWAY and then closed its socket left by GOAWAY,
// whether its kernel sent FIN or RST: grpc-go's Close writes GOAWAY and
// closes, and a frame still unread then (a PING ACK, a WINDOW_UPDATE)
// turns the FIN into RST. With nothing open that is no disconnect at all.
func (c *conn) clientLost(reason event.Reason, who event.Initiator, code uint32, debug string) {
	now := c.srv.cfg.Now()
	c.mu.Lock()
	if !c.ending.clientGoneLocked() {
		c.mu.Unlock()
		return
	}
	if ga := c.ending.goAway; ga != nil && (reason == event.ReasonConnectionClosed || reason == event.ReasonConnectionReset) {
		reason, code, debug = event.ReasonGoAway, uint32(ga.code), ga.debug
	}
	var events []event.Event
	var frames []byte
	for _, s := range c.streams.open {
		if s.appDone() {
			c.retireStreamLocked(s, now, event.ReasonUnspecified, event.InitiatorUnspecified)
			continue
		}
		events = append(events, c.streamEventLocked(s, reason, who, code, debug, now))
		frames = appendRSTStream(frames, s.id, http2.ErrCodeCancel)
		switch reason {
		case event.ReasonKeepaliveTimeout:
			s.span.KeepaliveTimeout(now)
		case event.ReasonGoAway:
			if ga := c.ending.goAway; ga != nil {
				s.span.GoAway(now, uint32(ga.code), ga.lastStreamID, ga.debug, who)
			}
		}
		c.retireStreamLocked(s, now, reason, who)
	}
	abnormal := len(events) > 0 || reason == event.ReasonConnectionReset ||
		reason == event.ReasonProtocolError || reason == event.ReasonKeepaliveTimeout || reason == event.ReasonPingAbuse
	if abnormal {
		events = append(events, c.connEventLocked(reason, who, code, debug, now))
		c.ending.reason, c.ending.who = reason, who
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

// onClientGoAwayLocked records the client's GOAWAY: the streams open when its
// connection then ends are lost to it. (A client's last-stream-id names
// server-initiated streams, which gRPC never opens.)
func (c *conn) onClientGoAwayLocked(last uint32, code http2.ErrCode, debug []byte) {
	c.ending.goAway = &goAwayInfo{lastStreamID: last, code: code, debug: string(debug)}
	c.span.GoAway(c.srv.cfg.Now(), uint32(code), last, c.ending.goAway.debug, event.InitiatorClient)
}

func (c *conn) streamEventLocked(s *stream, reason event.Reason, who event.Initiator, code uint32, debug string, now time.Time) event.Event {
	ev := c.connEventLocked(reason, who, code, debug, now)
	ev.Scope = event.ScopeStream
	ev.StreamID = s.id
	ev.Method = s.method
	ev.Authority = s.authority
	ev.Headers = s.headers
	ev.SessionKey = s.session
	ev.StartedAt = s.startedAt
	ev.BytesFromClient = s.bytesFromClient
	ev.BytesToClient = s.bytesToClient
	ev.TraceID, ev.SpanID, ev.TraceSampled = s.span.TraceID(), s.span.SpanID(), s.span.Sampled()
	return ev
}

// connEventLocked makes a connection-scope event.
func (c *conn) connEventLocked(reason event.Reason, who event.Initiator, code uint32, debug string, now time.Time) event.Event {
	c.eventSeq++
	return event.Event{
		ID:              c.id + "-" + strconv.FormatUint(uint64(c.eventSeq), 36),
		Scope:           event.ScopeConnection,
		Reason:          reason,
		Initiator:       who,
		HTTP2ErrorCode:  code,
		ConnectionID:    c.id,
		PeerAddress:     c.peer(),
		StartedAt:       c.start,
		DetectedAt:      now,
		GoAwayDebug:     debug,
		BytesFromClient: c.bytesFromClient.Load(),
		BytesToClient:   c.bytesToClient.Load(),
		RTT:             c.ka.RTT(),
	}
}

func (c *conn) publish(ev event.Event) {
	// Asked first: the arguments are boxed, and allocated, before Info
	// looks at the level; with --log-level warn that was a fifth of
	// publish's CPU in a burst of 10,000 events.
	if log := c.srv.cfg.Logger; log.Enabled(context.Background(), slog.LevelInfo) {
		log.Info("disconnect", "event", ev.ID, "scope", ev.Scope.String(), "reason", ev.Reason.String(),
			"initiator", ev.Initiator.String(), "code", http2.ErrCode(ev.HTTP2ErrorCode).String(),
			"conn", ev.ConnectionID, "stream", ev.StreamID, "method", ev.Method, "peer", ev.PeerAddress,
			"bytes_from_client", ev.BytesFromClient, "bytes_to_client", ev.BytesToClient)
	}
	c.metrics.Disconnect(ev.Reason, ev.Initiator)
	if ev.Scope == event.ScopeStream {
		// How long the client had been silent when it was found gone.
		c.metrics.DetectionLatency(ev.DetectedAt.Sub(time.Unix(0, c.lastRead.Load())))
	}
	if c.srv.cfg.Sink != nil {
		c.srv.cfg.Sink.Publish(ev)
	}
}

// hangUp closes the connection for the sidecar's own reason: events for the
// streams still open, in-band cleanup toward the app, then the client
// socket is closed.
func (c *conn) hangUp(how string, reason event.Reason, code uint32, debug string) {
	c.noteEnd(how)
	c.clientLost(reason, event.InitiatorSidecar, code, debug)
	c.closeClient()
}
