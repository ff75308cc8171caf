package proxy

import (
	"encoding/binary"

	"golang.org/x/net/http2"
)

// appSide is what the app → client forwarder does with the app's frames
// beyond forwarding them: it learns the app's settings, follows its
// resets and GOAWAYs, and reads its response headers (held back to
// END_HEADERS) to know when a call was answered and how it ended. The app
// is trusted more than a client: its frames go on unchanged.
type appSide struct {
	f      *forwarder
	maxBuf int // the largest frame accepted, header included
}

var _ frameRules = (*appSide)(nil)

// newAppForwarder makes the app → client forwarder.
func newAppForwarder(c *conn) *forwarder {
	f := &forwarder{c: c, from: fromApp, dec: newHeaderDecoder(c.srv.cfg.MaxHeaderListSize)}
	f.side = &appSide{f: f, maxBuf: frameHeaderLen + maxFrameSizeLimit}
	return f
}

func (ap *appSide) countRead(n int) { ap.f.c.bytesToClient.Add(uint64(n)) }

func (ap *appSide) batchLocked() {}

func (ap *appSide) checkLocked(frameHeader) error { return nil }

func (ap *appSide) dataLocked(frameHeader, int, int) (int, error) { return -1, nil }

func (ap *appSide) frameLimit() int { return ap.maxBuf }

// batchDoneLocked tells the keepalive policy that the client was sent
// response headers or data: a call is making progress.
func (ap *appSide) batchDoneLocked() {
	if f := ap.f; f.wroteHD {
		f.c.ka.HeadersOrDataWritten(f.now)
	}
}

func (ap *appSide) ended(err error) { ap.f.c.downstreamEnded(err) }

// frameLocked handles a complete non-DATA frame from the app.
func (ap *appSide) frameLocked(h frameHeader, frame []byte, off int) error {
	f := ap.f
	p := frame[frameHeaderLen:]
	switch h.Type {
	case http2.FrameHeaders, http2.FramePushPromise:
		f.wroteHD = true
		frag, err := appHeaderFragment(h, p)
		if err != nil {
			return err
		}
		f.blk = headerBlock{active: true, streamID: h.StreamID,
			endStream: h.Type == http2.FrameHeaders && h.Flags.Has(http2.FlagHeadersEndStream),
			frag:      append(f.blk.frag[:0], frag...), raw: f.blk.raw[:0]}
		return ap.continueResponseBlockLocked(h, frame, off)
	case http2.FrameContinuation:
		if !f.blk.active {
			return connError{Code: http2.ErrCodeProtocol, Reason: "CONTINUATION without HEADERS from the app"}
		}
		f.blk.frag = append(f.blk.frag, p...)
		return ap.continueResponseBlockLocked(h, frame, off)
	case http2.FrameRSTStream:
		if len(p) == 4 {
			f.c.onAppResetLocked(h.StreamID, http2.ErrCode(binary.BigEndian.Uint32(p)))
		}
	case http2.FrameSettings:
		if !h.Flags.Has(http2.FlagSettingsAck) {
			ap.prefacePingLocked(frame, off)
			forEachSetting(p, func(id http2.SettingID, v uint32) {
				switch id {
				case http2.SettingHeaderTableSize:
					f.c.appHeaderTable.Store(v)
				case http2.SettingMaxFrameSize:
					if v >= defaultMaxFrameSize && v <= maxFrameSizeLimit {
						f.c.appMaxFrame.Store(v)
					}
				case http2.SettingMaxConcurrentStreams:
					f.c.appMaxStreams.Store(v)
				}
			})
		}
	case http2.FrameGoAway:
		if len(p) >= 8 {
			f.c.onAppGoAwayLocked(binary.BigEndian.Uint32(p)&maxStreamID, http2.ErrCode(binary.BigEndian.Uint32(p[4:])), p[8:])
		}
	}
	return nil
}

// prefacePingLocked puts the policy's first PING, which times the round
// trip, right behind the app's first SETTINGS (the server preface), in the
// same write: a client reads it before anything the app says next, so one
// that closes after its answer leaves no PING of ours unread (which would
// make its kernel reset the connection instead of closing it).
func (ap *appSide) prefacePingLocked(frame []byte, off int) {
	f := ap.f
	for _, a := range f.c.ka.PrefaceSent(f.now) {
		start := len(f.scratch)
		f.scratch = appendPing(append(f.scratch, frame...), false, a.Ping)
		f.replace(off, frame, f.scratch[start:])
	}
}

// continueResponseBlockLocked decodes the app's header blocks, to keep the
// decoder in step and read grpc-status, and forwards them unchanged, held
// back until END_HEADERS so that nothing is injected inside a block.
func (ap *appSide) continueResponseBlockLocked(h frameHeader, frame []byte, off int) error {
	f := ap.f
	if len(f.blk.frag) > int(f.c.srv.cfg.MaxHeaderListSize) {
		return connError{Code: http2.ErrCodeEnhanceYourCalm, Reason: "header block from the app larger than the limit"}
	}
	end := h.Flags.Has(http2.FlagHeadersEndHeaders)
	if !end || len(f.blk.raw) > 0 {
		f.blk.raw = append(f.blk.raw, frame...)
		f.replace(off, frame, nil)
	}
	if !end {
		return nil
	}
	f.blk.active = false
	if len(f.blk.raw) > 0 {
		// Copied: blk.raw is reused by the next block of this batch.
		start := len(f.scratch)
		f.scratch = append(f.scratch, f.blk.raw...)
		f.out = append(f.out, f.scratch[start:])
	}
	f.dec.setAllowedTableSize(max(f.c.clientHeaderTable.Load(), defaultHeaderTableSize))
	fields, _, err := f.dec.decode(f.blk.frag)
	if err != nil {
		return err
	}
	s := f.c.streams.get(f.blk.streamID)
	if s != nil {
		s.answered = true
	}
	if s != nil && f.blk.endStream {
		s.grpcStatus = fieldValue(fields, "grpc-status")
		s.endFromApp()
		f.c.retireIfClosedLocked(s, f.now)
	}
	return nil
}

// appHeaderFragment returns the header block fragment of a HEADERS or
// PUSH_PROMISE frame from the app.
func appHeaderFragment(h frameHeader, p []byte) ([]byte, error) {
	if h.Type == http2.FrameHeaders {
		frag, _, err := headerPayload(h, p)
		return frag, err
	}
	if h.Flags.Has(http2.FlagPushPromisePadded) {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, connError{Code: http2.ErrCodeProtocol, Reason: "PUSH_PROMISE pad length exceeds payload"}
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if len(p) < 4 {
		return nil, connError{Code: http2.ErrCodeFrameSize, Reason: "PUSH_PROMISE truncated"}
	}
	return p[4:], nil
}
