package proxy

import (
	"bytes"
	"math"
	"strconv"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Request headers the relay adds toward the app. A client's own headers of
// these names are dropped, so the app can trust them.
const (
	HeaderConnectionID = "x-hangup-connection-id"
	HeaderStreamID     = "x-hangup-stream-id"
	// HeaderRTT is the connection's smoothed round-trip time in whole
	// microseconds when the request arrived (Config.RTTHeader; absent
	// while nothing was measured).
	HeaderRTT = "x-hangup-rtt-us"
)

// headerDecoder decodes the header blocks of one peer. Its hpack state
// follows that peer's encoder, so every block the peer sends goes through it,
// in order, on one goroutine.
//
// Most blocks repeat: a gRPC client sends the same bytes for every call of
// a method once its fields are in the dynamic table, and an app the same
// response headers and trailers. A block that leaves the dynamic table as it
// found it decodes to the same fields for as long as the table stays so, so
// the decoder remembers the last few such blocks (memo) and hands back their
// fields instead of decoding them again. Any block that changes the table
// forgets them all.
type headerDecoder struct {
	dec     *hpack.Decoder
	fields  []hpack.HeaderField
	size    uint32 // decoded header list size (RFC 9113 §6.5.2), so far
	maxSize uint32
	tooBig  bool
	// memoNext is the memo entry to replace next; a byte beside tooBig
	// rather than an int after memo keeps the decoder in a smaller size
	// class (224 bytes, not 240).
	memoNext uint8
	allowed  uint32 // dynamic table size the peer's encoder may use

	memo [memoBlocks]blockMemo
}

// memoBlocks is how many repeating blocks a decoder remembers: two cover a
// response's headers and trailers, or requests to two methods in turn.
const memoBlocks = 2

// memoMaxBlock and memoMaxFields bound the blocks worth remembering, in
// bytes and fields: a longer one is rare and costs the connection its copy
// while it is idle.
const (
	memoMaxBlock  = 512
	memoMaxFields = 32
)

// blockMemo is a header block that decodes without changing the dynamic
// table, with its fields. Toward the app it also keeps the block's
// re-encoding up to the relay's own fields, valid while the relay's
// encoder is in generation encGen.
type blockMemo struct {
	block  []byte // empty: the entry is unused
	fields []hpack.HeaderField

	enc       []byte
	encGen    uint64 // requestEncoder.gen when enc was made; 0: no enc
	encIDs    bool   // enc was made for request headers, not trailers
	encTraced bool   // enc was made with the client's trace context dropped

	wellFormed bool // the fields were checked as a request and are well formed
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
		d.clearMemo()
	}
}

// decode decodes one complete header block. The fields are valid until the
// next call; so is the memo entry, nil when the block is not remembered.
func (d *headerDecoder) decode(block []byte) ([]hpack.HeaderField, *blockMemo, error) {
	for i := range d.memo {
		if m := &d.memo[i]; len(m.block) > 0 && bytes.Equal(m.block, block) {
			return m.fields, m, nil
		}
	}
	d.fields, d.size, d.tooBig = d.fields[:0], 0, false
	d.dec.SetEmitEnabled(true)
	if _, err := d.dec.Write(block); err != nil {
		return nil, nil, connError{Code: http2.ErrCodeCompression, Reason: "hpack: " + err.Error()}
	}
	if err := d.dec.Close(); err != nil {
		return nil, nil, connError{Code: http2.ErrCodeCompression, Reason: "hpack: " + err.Error()}
	}
	if d.tooBig {
		return nil, nil, abuse(http2.ErrCodeEnhanceYourCalm, AbuseHeaderListTooBig, "decoded header list larger than "+strconv.Itoa(int(d.maxSize))+" bytes")
	}
	if !keepsTable(block) {
		d.clearMemo() // the table changed: the indexes the entries used moved
		return d.fields, nil, nil
	}
	if len(block) == 0 || len(block) > memoMaxBlock || len(d.fields) > memoMaxFields {
		return d.fields, nil, nil
	}
	m := &d.memo[d.memoNext]
	d.memoNext = (d.memoNext + 1) % memoBlocks
	*m = blockMemo{block: append(m.block[:0], block...), fields: append(m.fields[:0], d.fields...), enc: m.enc[:0]}
	return m.fields, m, nil
}

// clearMemo empties the memo.
func (d *headerDecoder) clearMemo() {
	for i := range d.memo {
		d.memo[i].block, d.memo[i].encGen = d.memo[i].block[:0], 0
	}
}

// requestEncoder re-encodes the client's header blocks for the app with the
// relay's own hpack encoder: the app's decoder follows this encoder, not the
// client's, which is what lets the relay add and drop fields.
//
// The fields that differ on every call (the relay's stream id and trace
// context, and the client's fields that perCall names) are literals without
// indexing: adding them to the dynamic table would only push out the fields
// that repeat. So a block of fields that are all in the table leaves it as
// it was, and its encoding up to the relay's stream id can be remembered
// with the client's block (blockMemo) and reused for as long as the table
// stays so: gen counts the encodings that changed it.
type requestEncoder struct {
	enc   *hpack.Encoder
	buf   bytes.Buffer
	limit uint32 // the app's SETTINGS_HEADER_TABLE_SIZE, as last applied
	gen   uint64 // starts at 1; moves on whenever the table may have changed

	// sizeUpdate: enc may owe the app a dynamic table size update, which
	// it writes before the next field it encodes; that must be the first
	// field of a block (RFC 7541 §4.2), so until then every block starts
	// with a field written by enc.
	sizeUpdate bool

	// The last block encoded field by field, when it left the table as it
	// was (in generation lastGen; 0: none): its fields, the block, and
	// where each field's encoding ends in it. A client whose blocks differ
	// in a field or two (a deadline) gets the others copied from it.
	last      []hpack.HeaderField
	lastEnds  []int
	lastBlock []byte
	lastGen   uint64
}

func newRequestEncoder() *requestEncoder {
	e := new(requestEncoder)
	e.init()
	return e
}

// init readies a zero requestEncoder in place; its hpack encoder writes to
// e.buf, so e must not be copied afterwards.
func (e *requestEncoder) init() {
	*e = requestEncoder{limit: defaultHeaderTableSize, gen: 1}
	e.enc = hpack.NewEncoder(&e.buf)
}

// setTableLimit applies the app's SETTINGS_HEADER_TABLE_SIZE; the encoder
// signals a smaller table in its next block.
func (e *requestEncoder) setTableLimit(v uint32) {
	if v != e.limit {
		e.limit = v
		e.gen++
		e.sizeUpdate = true
		e.enc.SetMaxDynamicTableSizeLimit(v)
		if v > defaultHeaderTableSize {
			// Keep our own table at the default: a bigger one buys
			// little for requests and costs memory per connection.
			e.enc.SetMaxDynamicTableSize(defaultHeaderTableSize)
		}
	}
}

// encode re-encodes fields, without any x-hangup-* header the client sent,
// and appends the relay's ids when ids is true (request headers, not
// trailers), and the RTT header when rttUS is not negative.
// memo, when not nil, is the decoder's entry for the client's block: its
// encoding is reused when it is still valid and remembered when it can be.
// The block is valid until the next call.
//
// With a trace context (tracing on), the client's traceparent and
// tracestate are replaced by the sidecar span's, so the app's spans nest
// under it.
func (e *requestEncoder) encode(fields []hpack.HeaderField, memo *blockMemo, ids bool, connID string, streamID uint32, trace traceContext, rttUS int64) []byte {
	e.buf.Reset()
	traced := trace.parent != ""
	if memo != nil && memo.encGen == e.gen && memo.encIDs == ids && memo.encTraced == traced && !e.sizeUpdate {
		e.buf.Write(memo.enc)
	} else {
		w := fieldWriter{e: e, reuse: e.lastGen == e.gen && !e.sizeUpdate, kept: true}
		for _, f := range fields {
			switch {
			case f.Name == HeaderConnectionID || f.Name == HeaderStreamID || f.Name == HeaderRTT:
			case traced && (f.Name == "traceparent" || f.Name == "tracestate"):
			default:
				w.write(f)
			}
		}
		if ids {
			w.write(hpack.HeaderField{Name: HeaderConnectionID, Value: connID})
		}
		e.last = e.last[:w.n]
		e.lastEnds = e.lastEnds[:w.n]
		if !w.kept {
			e.gen++
		}
		switch {
		case w.n > memoMaxFields:
			e.last, e.lastEnds, e.lastGen = nil, nil, 0
		case !w.kept || e.buf.Len() > memoMaxBlock:
			e.lastGen = 0
		default:
			e.lastBlock = append(e.lastBlock[:0], e.buf.Bytes()...)
			e.lastGen = e.gen
			if memo != nil {
				memo.enc = append(memo.enc[:0], e.buf.Bytes()...)
				memo.encGen, memo.encIDs, memo.encTraced = e.gen, ids, traced
			}
		}
	}
	b := e.buf.AvailableBuffer()
	if ids {
		b = append(b, streamIDField...)
		b = appendDecimalString(b, streamID)
	}
	if rttUS >= 0 {
		b = append(b, rttField...)
		b = appendDecimalString(b, uint32(min(rttUS, math.MaxUint32)))
	}
	if traced {
		b = appendLiteralField(b, hpack.HeaderField{Name: "traceparent", Value: trace.parent})
		if trace.state != "" {
			b = appendLiteralField(b, hpack.HeaderField{Name: "tracestate", Value: trace.state})
		}
	}
	e.buf.Write(b)
	return e.buf.Bytes()
}

// fieldWriter encodes the fields of one block in turn, copying each one's
// encoding from the encoder's last block where that has the same field at
// the same place, and records the block's fields in place of the last
// one's as it goes.
type fieldWriter struct {
	e      *requestEncoder
	n      int  // fields written
	oldEnd int  // where the last block's field n-1 ended in it
	reuse  bool // the last block's encodings are still valid
	kept   bool // the table is as it was when the block started
}

func (w *fieldWriter) write(f hpack.HeaderField) {
	e := w.e
	start, oldStart := e.buf.Len(), w.oldEnd
	if w.n < len(e.last) {
		w.oldEnd = e.lastEnds[w.n]
	} else {
		w.reuse = false
	}
	switch {
	case w.reuse && e.last[w.n] == f:
		e.buf.Write(e.lastBlock[oldStart:w.oldEnd])
	case perCall(f.Name) && !e.sizeUpdate:
		e.buf.Write(appendLiteralField(e.buf.AvailableBuffer(), f))
	default:
		g := f
		if perCall(f.Name) {
			g.Sensitive = true // never indexed: the table stays as it is
		}
		_ = e.enc.WriteField(g)
		e.sizeUpdate = false
		if !keepsTable(e.buf.Bytes()[start:]) {
			w.kept, w.reuse = false, false
		}
	}
	if w.n < len(e.last) {
		e.last[w.n], e.lastEnds[w.n] = f, e.buf.Len()
	} else {
		e.last, e.lastEnds = append(e.last, f), append(e.lastEnds, e.buf.Len())
	}
	w.n++
}

// streamIDField is the start of the x-hangup-stream-id field as a literal
// without indexing with a new, Huffman-coded name (RFC 7541 §6.2.2); the
// value follows.
var streamIDField = func() []byte {
	b := []byte{0x00, 0x80 | byte(hpack.HuffmanEncodeLength(HeaderStreamID))}
	return hpack.AppendHuffmanString(b, HeaderStreamID)
}()

// rttField starts the x-hangup-rtt-us field the same way: its value changes
// from call to call, so it is never indexed.
var rttField = func() []byte {
	b := []byte{0x00, 0x80 | byte(hpack.HuffmanEncodeLength(HeaderRTT))}
	return hpack.AppendHuffmanString(b, HeaderRTT)
}()

// perCall reports whether a request header usually has a new value on
// every call: a deadline, a body length, a trace or request id.
func perCall(name string) bool {
	switch name {
	case "grpc-timeout", "content-length", "traceparent", "tracestate", "grpc-trace-bin",
		"x-request-id", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "uber-trace-id",
		"x-cloud-trace-context", "x-amzn-trace-id":
		return true
	}
	return false
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

// malformedRequest returns why a request's fields make it malformed
// (RFC 9113 §8.2.2), "" when they do not: connection-specific fields and
// a TE other than "trailers" have no meaning in HTTP/2. The relay refuses
// such a request itself, with RST_STREAM(PROTOCOL_ERROR), where the app
// might answer it (x/net's server says 400).
func malformedRequest(fields []hpack.HeaderField) string {
	for _, f := range fields {
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return "connection-specific header field " + f.Name
		case "te":
			if f.Value != "trailers" {
				return `TE header field other than "trailers"`
			}
		}
	}
	return ""
}
