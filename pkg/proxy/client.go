package proxy

import (
	"encoding/binary"
	"strconv"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/pkg/event"
)

// clientSide is what the client → app forwarder does with the client's
// frames beyond forwarding them: it enforces the protocol and the abuse
// limits on a peer it does not trust, opens streams, re-encodes request
// headers for the app, drops the frames of refused streams and feeds the
// keepalive policy.
type clientSide struct {
	f   *forwarder
	enc requestEncoder // by value: one allocation per connection less
}

var _ frameRules = (*clientSide)(nil)

// newClientForwarder makes the client → app forwarder.
func newClientForwarder(c *conn) *forwarder {
	f := &forwarder{c: c, from: fromClient, dec: newHeaderDecoder(c.srv.cfg.MaxHeaderListSize)}
	cl := &clientSide{f: f}
	cl.enc.init()
	f.side = cl
	return f
}

func (cl *clientSide) countRead(n int) { cl.f.c.bytesFromClient.Add(uint64(n)) }

// batchLocked stamps the batch as the client's latest sign of life.
func (cl *clientSide) batchLocked() {
	f := cl.f
	f.c.kaFrameReadLocked(f.now)
	f.c.lastRead.Store(f.now.UnixNano())
}

func (cl *clientSide) checkLocked(h frameHeader) error { return checkClientFrame(h) }

// dataLocked admits a DATA frame from the client, or drops it when its
// stream was refused: then it returns the offset after what it dropped.
func (cl *clientSide) dataLocked(h frameHeader, off, end int) (int, error) {
	f := cl.f
	if err := checkClientFrame(h); err != nil {
		return -1, err
	}
	if err := f.c.checkDataLocked(h); err != nil {
		return -1, err
	}
	if h.Length > f.c.appMaxFrame.Load() {
		return -1, connError{Code: http2.ErrCodeFrameSize, Reason: "DATA frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	if f.c.refuse.dropsLocked(h.StreamID) && f.c.streams.get(h.StreamID) == nil {
		return f.dropData(h, off, end), nil
	}
	return -1, nil
}

func (cl *clientSide) frameLimit() int { return frameHeaderLen + int(cl.f.c.appMaxFrame.Load()) }

func (cl *clientSide) batchDoneLocked() {}

func (cl *clientSide) ended(err error) { cl.f.c.upstreamEnded(err) }

// frameLocked handles a complete non-DATA frame from the client.
func (cl *clientSide) frameLocked(h frameHeader, frame []byte, off int) error {
	f := cl.f
	p := frame[frameHeaderLen:]
	switch h.Type {
	case http2.FrameWindowUpdate, http2.FrameRSTStream, http2.FramePriority:
		if f.c.refuse.dropsLocked(h.StreamID) && f.c.streams.get(h.StreamID) == nil {
			f.replace(off, frame, nil) // the app never saw this stream
			return nil
		}
	}
	switch h.Type {
	case http2.FrameWindowUpdate:
		if binary.BigEndian.Uint32(p)&maxStreamID == 0 {
			if h.StreamID == 0 {
				return connError{Code: http2.ErrCodeProtocol, Reason: "WINDOW_UPDATE with increment 0 on the connection"}
			}
			// A stream error (RFC 9113 §6.9): that stream ends, the
			// others run on.
			cl.streamErrorLocked(h.StreamID, off, frame, "WINDOW_UPDATE with increment 0")
		}
	case http2.FrameHeaders:
		if h.StreamID == 0 {
			return connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on stream 0"}
		}
		frag, prio, err := headerPayload(h, p)
		if err != nil {
			return err
		}
		f.blk = headerBlock{active: true, streamID: h.StreamID, endStream: h.Flags.Has(http2.FlagHeadersEndStream),
			frag: append(f.blk.frag[:0], frag...), raw: f.blk.raw[:0]}
		if prio != nil {
			f.blk.hasPrio = true
			copy(f.blk.prio[:], prio)
		}
		return cl.continueRequestBlockLocked(h, frame, off)
	case http2.FrameContinuation:
		if !f.blk.active {
			return connError{Code: http2.ErrCodeProtocol, Reason: "CONTINUATION without HEADERS"}
		}
		f.blk.frag = append(f.blk.frag, p...)
		return cl.continueRequestBlockLocked(h, frame, off)
	case http2.FramePushPromise:
		return connError{Code: http2.ErrCodeProtocol, Reason: "PUSH_PROMISE from a client"}
	case http2.FrameRSTStream:
		if len(p) == 4 {
			return f.c.onClientResetLocked(h.StreamID, http2.ErrCode(binary.BigEndian.Uint32(p)), &f.events)
		}
	case http2.FrameSettings:
		if !h.Flags.Has(http2.FlagSettingsAck) {
			if err := f.c.checkSettingsLocked(f.now); err != nil {
				return err
			}
			forEachSetting(p, func(id http2.SettingID, v uint32) {
				if id == http2.SettingHeaderTableSize {
					f.c.clientHeaderTable.Store(v)
				}
			})
			if start := len(f.scratch); settingsRepeat(p) {
				// Processed in order (RFC 9113 §6.5.3), repeats leave the
				// last value; some apps (x/net's server) reject them.
				f.scratch = appendFrameHeader(f.scratch, frameHeader{Type: http2.FrameSettings})
				f.scratch = appendLastSettings(f.scratch, p)
				n := len(f.scratch) - start - frameHeaderLen
				f.scratch[start], f.scratch[start+1], f.scratch[start+2] = byte(n>>16), byte(n>>8), byte(n)
				f.replace(off, frame, f.scratch[start:])
			}
		}
	case http2.FramePing:
		switch {
		case len(p) != 8:
		case !h.Flags.Has(http2.FlagPingAck):
			f.c.onClientPingLocked()
		case f.c.ownPingAckLocked([8]byte(p)):
			f.replace(off, frame, nil) // the answer to the relay's own PING
		}
	case http2.FrameGoAway:
		if len(p) >= 8 {
			f.c.onClientGoAwayLocked(binary.BigEndian.Uint32(p)&maxStreamID, http2.ErrCode(binary.BigEndian.Uint32(p[4:])), p[8:])
		}
	}
	return nil
}

// streamErrorLocked answers a client's stream error (RFC 9113 §5.4.2) on the
// frame at off: the client gets RST_STREAM(PROTOCOL_ERROR), the app
// RST_STREAM(CANCEL) in the frame's place so that its handler stops, and
// a running handler's stream a PROTOCOL_ERROR event. The client's frames
// on the stream that follow are dropped.
func (cl *clientSide) streamErrorLocked(id uint32, off int, frame []byte, reason string) {
	f := cl.f
	f.replies = appendRSTStream(f.replies, id, http2.ErrCodeProtocol)
	s := f.c.streams.get(id)
	if s == nil {
		f.replace(off, frame, nil)
	} else {
		start := len(f.scratch)
		f.scratch = appendRSTStream(f.scratch, id, http2.ErrCodeCancel)
		f.replace(off, frame, f.scratch[start:])
		s.span.RSTStream(f.now, uint32(http2.ErrCodeProtocol), event.InitiatorSidecar)
		if s.appDone() {
			f.c.resetStreamLocked(s, f.now, event.ReasonUnspecified, event.InitiatorUnspecified)
		} else {
			f.events = append(f.events, f.c.streamEventLocked(s, event.ReasonProtocolError, event.InitiatorSidecar, uint32(http2.ErrCodeProtocol), reason, f.now))
			f.c.resetStreamLocked(s, f.now, event.ReasonProtocolError, event.InitiatorSidecar)
		}
	}
	f.c.refuse.refuseLocked(id)
	f.c.srv.cfg.Logger.Debug("client stream error", "conn", f.c.id, "stream", id, "reason", reason)
}

// continueRequestBlockLocked bounds the header block and, once END_HEADERS has
// arrived, re-encodes it for the app in place of the client's frames.
func (cl *clientSide) continueRequestBlockLocked(h frameHeader, frame []byte, off int) error {
	f := cl.f
	if len(f.blk.frag) > int(f.c.srv.cfg.MaxHeaderListSize) {
		return abuse(http2.ErrCodeEnhanceYourCalm, AbuseHeaderListTooBig, "header block larger than "+strconv.Itoa(int(f.c.srv.cfg.MaxHeaderListSize))+" bytes (CONTINUATION flood?)")
	}
	if !h.Flags.Has(http2.FlagHeadersEndHeaders) {
		f.replace(off, frame, nil)
		return nil
	}
	f.blk.active = false
	f.dec.setAllowedTableSize(f.c.appHeaderTable.Load())
	cl.enc.setTableLimit(f.c.appHeaderTable.Load())
	fields, memo, err := f.dec.decode(f.blk.frag)
	if err != nil {
		return err
	}
	id := f.blk.streamID
	s := f.c.streams.get(id)
	isRequest := false
	if s == nil {
		switch newest := max(f.c.streams.lastClientID, f.c.refuse.top); {
		case id%2 == 0:
			return connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on an even stream id " + strconv.FormatUint(uint64(id), 10) + ": a client's streams are odd (RFC 9113 §5.1.1)"}
		case id > newest && f.c.refuse.refusesLocked(id):
			// Opened after a GOAWAY: the app never sees it (RFC 9113
			// §6.8); the decoder has kept in step.
			f.c.refuse.refuseLocked(id)
			f.replies = appendRSTStream(f.replies, id, http2.ErrCodeRefusedStream)
			f.replace(off, frame, nil)
			return nil
		case f.c.refuse.dropsLocked(id):
			f.replace(off, frame, nil) // trailers of a refused stream
			return nil
		case id <= newest && f.c.refuse.appResetRecentlyLocked(id):
			// Crossed the app's RST_STREAM: the app ignores it.
		case id <= newest:
			return connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS on closed stream " + strconv.FormatUint(uint64(id), 10) + ": stream ids may not be reused (RFC 9113 §5.1.1)"}
		default:
			if memo == nil || !memo.wellFormed {
				if reason := malformedRequest(fields); reason != "" {
					// A stream error: the request never reaches the app,
					// and the client's frames on it are dropped.
					f.c.refuse.refuseLocked(id)
					f.replies = appendRSTStream(f.replies, id, http2.ErrCodeProtocol)
					f.replace(off, frame, nil)
					f.c.srv.cfg.Logger.Debug("malformed request refused", "conn", f.c.id, "stream", id, "reason", reason)
					return nil
				}
				if memo != nil {
					memo.wellFormed = true
				}
			}
			if err := f.c.checkStreamsLocked(); err != nil {
				return err
			}
			s, isRequest = f.c.openStreamLocked(id, fields, f.now), true
		}
	}
	var trace traceContext
	if isRequest && s.span != nil {
		trace = traceContext{parent: s.span.Traceparent(), state: s.span.Tracestate()}
	}
	rttUS := int64(-1)
	if isRequest && f.c.srv.cfg.RTTHeader {
		if rtt := f.c.ka.RTT(); rtt.Known() {
			rttUS = rtt.Smoothed.Microseconds()
		}
	}
	block := cl.enc.encode(fields, memo, isRequest, f.c.id, id, trace, rttUS)
	start := len(f.scratch)
	f.scratch = appendHeaderFrames(f.scratch, id, f.blk.endStream, f.blk.priority(), block, f.c.appMaxFrame.Load())
	f.replace(off, frame, f.scratch[start:])
	if s != nil && f.blk.endStream {
		s.endFromClient()
		f.c.retireIfClosedLocked(s, f.now)
	}
	return nil
}

// settingsRepeat reports whether a SETTINGS payload names a setting more
// than once.
func settingsRepeat(p []byte) bool {
	n := len(p) / 6
	if n > 16 {
		seen := make(map[uint16]struct{}, n)
		for ; len(p) >= 6; p = p[6:] {
			id := binary.BigEndian.Uint16(p)
			if _, ok := seen[id]; ok {
				return true
			}
			seen[id] = struct{}{}
		}
		return false
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if binary.BigEndian.Uint16(p[6*i:]) == binary.BigEndian.Uint16(p[6*j:]) {
				return true
			}
		}
	}
	return false
}

// appendLastSettings appends each setting of a SETTINGS payload once: at
// its last place, with its last value, which is what processing them in
// order leaves.
func appendLastSettings(dst, p []byte) []byte {
	n := len(p) / 6
	last := make(map[uint16]int, n)
	for i := range n {
		last[binary.BigEndian.Uint16(p[6*i:])] = i
	}
	for i := range n {
		if last[binary.BigEndian.Uint16(p[6*i:])] == i {
			dst = append(dst, p[6*i:6*i+6]...)
		}
	}
	return dst
}
