package proxy

import (
	"bytes"
	"strconv"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Request headers the relay adds toward the app. A client's own headers of
// these names are dropped, so the app can trust them.
const (
	HeaderConnectionID = "x-hangup-connection-id"
	HeaderStreamID     = "x-hangup-stream-id"
)

// headerDecoder decodes the header blocks of one peer. Its hpack state
// follows that peer's encoder, so every block the peer sends goes through it,
// in order, on one goroutine.
type headerDecoder struct {
	dec     *hpack.Decoder
	fields  []hpack.HeaderField
	size    uint32 // decoded header list size (RFC 9113 §6.5.2), so far
	maxSize uint32
	tooBig  bool
	allowed uint32 // dynamic table size the peer's encoder may use
}

func newHeaderDecoder(maxListSize uint32) *headerDecoder {
	d := &headerDecoder{maxSize: maxListSize, allowed: defaultHeaderTableSize}
	d.dec = hpack.NewDecoder(defaultHeaderTableSize, d.emit)
	d.dec.SetMaxStringLength(int(maxListSize))
	return d
}

func (d *headerDecoder) emit(f hpack.HeaderField) {
	d.size += f.Size()
	if d.size > d.maxSize {
		d.tooBig = true
		d.dec.SetEmitEnabled(false)
		return
	}
	d.fields = append(d.fields, f)
}

// setAllowedTableSize follows the SETTINGS_HEADER_TABLE_SIZE that the peer's
// encoder was told by the other side.
func (d *headerDecoder) setAllowedTableSize(v uint32) {
	if v != d.allowed {
		d.allowed = v
		d.dec.SetAllowedMaxDynamicTableSize(v)
	}
}

// decode decodes one complete header block. The fields are valid until the
// next call.
func (d *headerDecoder) decode(block []byte) ([]hpack.HeaderField, error) {
	d.fields, d.size, d.tooBig = d.fields[:0], 0, false
	d.dec.SetEmitEnabled(true)
	if _, err := d.dec.Write(block); err != nil {
		return nil, connError{Code: http2.ErrCodeCompression, Reason: "hpack: " + err.Error()}
	}
	if err := d.dec.Close(); err != nil {
		return nil, connError{Code: http2.ErrCodeCompression, Reason: "hpack: " + err.Error()}
	}
	if d.tooBig {
		return nil, abuse(http2.ErrCodeEnhanceYourCalm, AbuseHeaderListTooBig, "decoded header list larger than "+strconv.Itoa(int(d.maxSize))+" bytes")
	}
	return d.fields, nil
}

// requestEncoder re-encodes the client's header blocks for the app with the
// relay's own hpack encoder: the app's decoder follows this encoder, not the
// client's, which is what lets the relay add and drop fields.
type requestEncoder struct {
	enc   *hpack.Encoder
	buf   bytes.Buffer
	limit uint32 // the app's SETTINGS_HEADER_TABLE_SIZE, as last applied
}

func newRequestEncoder() *requestEncoder {
	e := &requestEncoder{limit: defaultHeaderTableSize}
	e.enc = hpack.NewEncoder(&e.buf)
	return e
}

// setTableLimit applies the app's SETTINGS_HEADER_TABLE_SIZE; the encoder
// signals a smaller table in its next block.
func (e *requestEncoder) setTableLimit(v uint32) {
	if v != e.limit {
		e.limit = v
		e.enc.SetMaxDynamicTableSizeLimit(v)
		if v > defaultHeaderTableSize {
			// Keep our own table at the default: a bigger one buys
			// little for requests and costs memory per connection.
			e.enc.SetMaxDynamicTableSize(defaultHeaderTableSize)
		}
	}
}

// encode re-encodes fields, without any x-hangup-* id the client sent, and
// appends the relay's ids when ids is true (request headers, not trailers).
// The block is valid until the next call.
//
// With a trace context (tracing on), the client's traceparent and
// tracestate are replaced by the sidecar span's, so the app's spans nest
// under it.
func (e *requestEncoder) encode(fields []hpack.HeaderField, ids bool, connID string, streamID uint32, trace traceContext) []byte {
	e.buf.Reset()
	for _, f := range fields {
		switch {
		case f.Name == HeaderConnectionID || f.Name == HeaderStreamID:
			continue
		case trace.parent != "" && (f.Name == "traceparent" || f.Name == "tracestate"):
			continue
		}
		_ = e.enc.WriteField(f)
	}
	if ids {
		var num [10]byte
		_ = e.enc.WriteField(hpack.HeaderField{Name: HeaderConnectionID, Value: connID})
		_ = e.enc.WriteField(hpack.HeaderField{Name: HeaderStreamID, Value: string(strconv.AppendUint(num[:0], uint64(streamID), 10))})
	}
	if trace.parent != "" {
		_ = e.enc.WriteField(hpack.HeaderField{Name: "traceparent", Value: trace.parent})
		if trace.state != "" {
			_ = e.enc.WriteField(hpack.HeaderField{Name: "tracestate", Value: trace.state})
		}
	}
	return e.buf.Bytes()
}

// traceContext is the W3C trace context the app receives; zero when
// tracing is off.
type traceContext struct{ parent, state string }

// appendHeaderFrames appends block as one HEADERS frame and as many
// CONTINUATION frames as maxFrame requires. Padding is dropped; END_STREAM
// and the priority fields are kept as the client sent them.
func appendHeaderFrames(b []byte, streamID uint32, endStream bool, priority, block []byte, maxFrame uint32) []byte {
	first := true
	for first || len(block) > 0 {
		room := int(maxFrame)
		h := frameHeader{Type: http2.FrameContinuation, StreamID: streamID}
		if first {
			h.Type = http2.FrameHeaders
			if endStream {
				h.Flags |= http2.FlagHeadersEndStream
			}
			if priority != nil {
				h.Flags |= http2.FlagHeadersPriority
				room -= len(priority)
			}
		}
		n := min(room, len(block))
		if n == len(block) {
			h.Flags |= http2.FlagHeadersEndHeaders
		}
		h.Length = uint32(n)
		if first {
			h.Length += uint32(len(priority))
		}
		b = appendFrameHeader(b, h)
		if first {
			b = append(b, priority...)
		}
		b = append(b, block[:n]...)
		block = block[n:]
		first = false
	}
	return b
}

// fieldValue returns the value of the first field named name.
func fieldValue(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
