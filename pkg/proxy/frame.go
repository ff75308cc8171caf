package proxy

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/http2"
)

// clientPreface is the connection preface of RFC 9113 §3.4.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	frameHeaderLen = 9

	// defaultMaxFrameSize is SETTINGS_MAX_FRAME_SIZE until a peer says
	// otherwise (RFC 9113 §6.5.2); maxFrameSizeLimit is the largest it may say.
	defaultMaxFrameSize = 16384
	maxFrameSizeLimit   = 1<<24 - 1

	// defaultHeaderTableSize is SETTINGS_HEADER_TABLE_SIZE's initial value.
	defaultHeaderTableSize = 4096

	// maxStreamID is the largest stream id, used as the last-stream-id of a
	// graceful GOAWAY's first phase (RFC 9113 §6.8).
	maxStreamID = 1<<31 - 1
)

// frameHeader is the 9-byte header of RFC 9113 §4.1, parsed by hand on the
// hot path so that walking a buffer of frames allocates nothing.
type frameHeader struct {
	Length   uint32
	Type     http2.FrameType
	Flags    http2.Flags
	StreamID uint32
}

func parseFrameHeader(b []byte) frameHeader {
	_ = b[8]
	return frameHeader{
		Length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		Type:     http2.FrameType(b[3]),
		Flags:    http2.Flags(b[4]),
		StreamID: binary.BigEndian.Uint32(b[5:9]) & (1<<31 - 1),
	}
}

func appendFrameHeader(b []byte, h frameHeader) []byte {
	return append(b,
		byte(h.Length>>16), byte(h.Length>>8), byte(h.Length),
		byte(h.Type), byte(h.Flags),
		byte(h.StreamID>>24)&0x7f, byte(h.StreamID>>16), byte(h.StreamID>>8), byte(h.StreamID))
}

// appendRSTStream appends an RST_STREAM frame (RFC 9113 §6.4).
func appendRSTStream(b []byte, streamID uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, frameHeader{Length: 4, Type: http2.FrameRSTStream, StreamID: streamID})
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

// appendWindowUpdate appends a WINDOW_UPDATE frame (RFC 9113 §6.9).
func appendWindowUpdate(b []byte, streamID, increment uint32) []byte {
	b = appendFrameHeader(b, frameHeader{Length: 4, Type: http2.FrameWindowUpdate, StreamID: streamID})
	return binary.BigEndian.AppendUint32(b, increment&maxStreamID)
}

// appendGoAway appends a GOAWAY frame (RFC 9113 §6.8).
func appendGoAway(b []byte, lastStreamID uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, frameHeader{Length: uint32(8 + len(debug)), Type: http2.FrameGoAway})
	b = binary.BigEndian.AppendUint32(b, lastStreamID&maxStreamID)
	b = binary.BigEndian.AppendUint32(b, uint32(code))
	return append(b, debug...)
}

// appendPing appends a PING frame (RFC 9113 §6.7).
func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var flags http2.Flags
	if ack {
		flags = http2.FlagPingAck
	}
	b = appendFrameHeader(b, frameHeader{Length: 8, Type: http2.FramePing, Flags: flags})
	return append(b, data[:]...)
}

// connError is a connection error (RFC 9113 §5.4.1): the relay answers it
// with GOAWAY carrying Code and closes both sides.
type connError struct {
	Code   http2.ErrCode
	Reason string // goes into the GOAWAY debug data and the log
	Kind   string // the abuse kind (Abuse*), "" for a plain protocol violation
}

func (e connError) Error() string {
	return fmt.Sprintf("connection error %v: %s", e.Code, e.Reason)
}

// headerPayload strips padding and priority fields from a HEADERS frame's
// payload and returns the header block fragment and, when present, the five
// priority bytes (RFC 9113 §6.2).
func headerPayload(h frameHeader, p []byte) (frag, priority []byte, err error) {
	if h.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, nil, connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS padded but empty"}
		}
		pad := int(p[0])
		p = p[1:]
		if pad > len(p) {
			return nil, nil, connError{Code: http2.ErrCodeProtocol, Reason: "HEADERS pad length exceeds payload"}
		}
		p = p[:len(p)-pad]
	}
	if h.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, nil, connError{Code: http2.ErrCodeFrameSize, Reason: "HEADERS priority fields truncated"}
		}
		priority, p = p[:5], p[5:]
	}
	return p, priority, nil
}

// checkClientFrame applies the RFC 9113 rules on stream ids and fixed
// lengths that make a client's frame a connection error (§6). The relay
// checks them itself rather than leave them to the app: the app would end
// the connection on its own, and the client's open streams would then be
// lost without a disconnect event.
func checkClientFrame(h frameHeader) error {
	onStream0 := h.StreamID == 0
	switch h.Type {
	case http2.FrameData, http2.FrameHeaders, http2.FramePriority, http2.FrameRSTStream, http2.FrameContinuation:
		if onStream0 {
			return connError{Code: http2.ErrCodeProtocol, Reason: h.Type.String() + " on stream 0"}
		}
	case http2.FrameSettings, http2.FramePing, http2.FrameGoAway:
		if !onStream0 {
			return connError{Code: http2.ErrCodeProtocol, Reason: h.Type.String() + " on a stream"}
		}
	}
	switch {
	case h.Type == http2.FrameRSTStream && h.Length != 4,
		h.Type == http2.FrameWindowUpdate && h.Length != 4,
		h.Type == http2.FramePing && h.Length != 8,
		h.Type == http2.FrameGoAway && h.Length < 8,
		h.Type == http2.FrameSettings && h.Length%6 != 0,
		h.Type == http2.FrameSettings && h.Flags.Has(http2.FlagSettingsAck) && h.Length != 0:
		return connError{Code: http2.ErrCodeFrameSize, Reason: h.Type.String() + " of the wrong length"}
	}
	return nil
}

// forEachSetting calls fn for each setting of a SETTINGS payload
// (RFC 9113 §6.5.1); a malformed length is left for the receiver to reject.
func forEachSetting(p []byte, fn func(http2.SettingID, uint32)) {
	for ; len(p) >= 6; p = p[6:] {
		fn(http2.SettingID(binary.BigEndian.Uint16(p)), binary.BigEndian.Uint32(p[2:]))
	}
}
