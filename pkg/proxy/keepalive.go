package proxy

import (
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// The connection policy (keepalive, idle, age, drain) is a pure state
// machine in pkg/keepalive. The relay feeds it under conn.mu, collects the
// actions it returns in c.actions, and runs them after unlocking, where
// writing to a socket cannot hold up the other direction. One timer per
// connection fires at the policy's deadline; it is only moved earlier on
// the hot path (a later deadline is found when the timer fires early), so
// reading a frame costs a clock read and no timer operation.

// kaFrameReadLocked records a batch of frames from the client.
func (c *conn) kaFrameReadLocked(now time.Time) {
	c.ka.FrameRead(now)
	c.rearmLocked(now)
}

// queueActionsLocked queues the policy's actions and re-arms.
func (c *conn) queueActionsLocked(now time.Time, acts []keepalive.Action) {
	c.actions = append(c.actions, acts...)
	c.rearmLocked(now)
}

// rearmLocked moves the timer to the policy's deadline when that is earlier
// than the armed one.
func (c *conn) rearmLocked(now time.Time) {
	d := c.ka.Deadline()
	if d.IsZero() || c.ending.tornDown {
		return
	}
	// The policy's deadlines are after its start, c.start, so 0 can mean
	// not armed (one at the start would only re-arm the timer).
	at := d.Sub(c.start)
	if c.armed != 0 && at >= c.armed {
		return
	}
	c.armed = at
	if c.timer == nil {
		c.timer = time.AfterFunc(d.Sub(now), c.onTimer)
	} else {
		c.timer.Reset(d.Sub(now))
	}
}

// onTimer runs the policy's due actions: keepalive PINGs, timeouts, the
// phases of a drain.
func (c *conn) onTimer() {
	c.mu.Lock()
	if c.ending.tornDown {
		c.mu.Unlock()
		return
	}
	c.timerRuns.Add(1)
	defer c.timerRuns.Done()
	now := c.srv.cfg.Now()
	c.armed = 0
	c.queueActionsLocked(now, c.ka.Tick(now))
	c.mu.Unlock()
	c.runActions()
}

// drain starts the graceful shutdown of this connection (SIGTERM).
func (c *conn) drain(timeout time.Duration) {
	c.mu.Lock()
	now := c.srv.cfg.Now()
	c.queueActionsLocked(now, c.ka.Drain(now, timeout))
	c.mu.Unlock()
	c.runActions()
}

// stopTimer ends the policy's timer and waits for a run in progress.
func (c *conn) stopTimer() {
	c.mu.Lock()
	c.ending.tornDown = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	c.timerRuns.Wait()
}

// runActions carries out the policy's queued actions, in order.
func (c *conn) runActions() {
	c.mu.Lock()
	acts := c.actions
	c.actions = nil
	last := c.streams.lastClientID
	c.mu.Unlock()
	for _, a := range acts {
		switch a.Kind {
		case keepalive.SendPing:
			c.srv.cfg.Logger.Debug("keepalive ping", "conn", c.id)
			c.metrics.KeepalivePing()
			_ = c.toClient.inject(appendPing(nil, false, a.Ping))
		case keepalive.SendRTTPing:
			_ = c.toClient.inject(appendPing(nil, false, a.Ping))
		case keepalive.GoAwayGraceful:
			// Phase 1: stop new streams, let those in flight arrive.
			_ = c.toClient.inject(appendPing(appendGoAway(nil, maxStreamID, http2.ErrCodeNo, a.Debug), false, a.Ping))
		case keepalive.GoAwayFinal:
			c.mu.Lock()
			last = c.streams.lastClientID
			c.refuse.goAwayLocked(last)
			c.mu.Unlock()
			_ = c.toClient.inject(appendGoAway(nil, last, http2.ErrCodeNo, a.Debug))
		case keepalive.GoAwayTooManyPings:
			c.metrics.AbuseGoAway(a.Debug)
			_ = c.toClient.inject(appendGoAway(nil, last, http2.ErrCodeEnhanceYourCalm, a.Debug))
			c.hangUp("ping abuse: "+a.Debug, a.Reason, uint32(http2.ErrCodeEnhanceYourCalm), a.Debug)
		case keepalive.CloseDead:
			c.metrics.KeepaliveTimeout()
			c.span.KeepaliveTimeout(c.srv.cfg.Now())
			c.hangUp("keepalive timeout: no PING ACK", a.Reason, 0, a.Debug)
		case keepalive.Close:
			c.hangUp("closed by the sidecar: "+a.Debug, a.Reason, 0, a.Debug)
		}
	}
}

// ownPingAckLocked handles a PING ACK from the client and reports whether it
// answers the relay's own PING (then it is consumed, not forwarded). When
// it was timed, its round trip goes to the RTT histogram: one Record per
// sample, nothing per frame.
func (c *conn) ownPingAckLocked(data [8]byte) bool {
	if !c.ka.IsOwnPing(data) {
		return false
	}
	now := c.srv.cfg.Now()
	before := c.ka.RTT().Samples
	c.queueActionsLocked(now, c.ka.PingAckReceived(now, data))
	if rtt := c.ka.RTT(); rtt.Samples != before {
		c.metrics.RTT(rtt.Last)
		c.srv.cfg.Logger.Debug("rtt sample", "conn", c.id, "rtt", rtt.Last, "smoothed", rtt.Smoothed, "min", rtt.Min)
	}
	return true
}

// onClientPingLocked judges a PING from the client.
func (c *conn) onClientPingLocked() {
	now := c.srv.cfg.Now()
	c.queueActionsLocked(now, c.ka.PingReceived(now))
}
