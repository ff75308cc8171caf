package proxy

import (
	"strconv"

	"golang.org/x/net/http2/hpack"
)

// The RFC 7541 (HPACK) wire-format helpers the relay needs beyond x/net's
// hpack package: reading integers and skipping strings to tell whether a
// block changes the dynamic table, and writing literals directly.

// keepsTable reports whether decoding block leaves the dynamic table as it
// was: the block holds only indexed fields (RFC 7541 §6.1) and literals
// without indexing or never indexed (§6.2.2, §6.2.3), no literal with
// incremental indexing (§6.2.1) and no table size update (§6.3). It is
// called on blocks that decoded, and says false for anything malformed.
func keepsTable(block []byte) bool {
	for len(block) > 0 {
		var ok bool
		switch b := block[0]; {
		case b&0x80 != 0: // indexed field
			_, block, ok = hpackInt(block, 7)
		case b&0xc0 == 0x40, b&0xe0 == 0x20: // incremental indexing, size update
			return false
		default: // literal without indexing or never indexed
			var name uint64
			if name, block, ok = hpackInt(block, 4); ok && name == 0 {
				block, ok = skipHpackString(block)
			}
			if ok {
				block, ok = skipHpackString(block)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// hpackInt reads an integer with an n-bit prefix (RFC 7541 §5.1).
func hpackInt(b []byte, n uint) (v uint64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	mask := uint64(1)<<n - 1
	v = uint64(b[0]) & mask
	b = b[1:]
	if v < mask {
		return v, b, true
	}
	for shift := uint(0); len(b) > 0 && shift < 63; shift += 7 {
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, b, true
		}
	}
	return 0, nil, false
}

// skipHpackString skips a string literal (RFC 7541 §5.2).
func skipHpackString(b []byte) ([]byte, bool) {
	n, b, ok := hpackInt(b, 7)
	if !ok || n > uint64(len(b)) {
		return nil, false
	}
	return b[n:], true
}

// appendLiteralField appends f as a literal without indexing, or never
// indexed when the client marked it so, with a new name, both strings raw
// (RFC 7541 §6.2.2, §6.2.3).
func appendLiteralField(b []byte, f hpack.HeaderField) []byte {
	if f.Sensitive {
		b = append(b, 0x10)
	} else {
		b = append(b, 0x00)
	}
	b = appendRawString(b, f.Name)
	return appendRawString(b, f.Value)
}

// appendRawString appends s as a string literal without Huffman coding.
func appendRawString(b []byte, s string) []byte {
	n := uint64(len(s))
	if n < 0x7f {
		b = append(b, byte(n))
	} else {
		b = append(b, 0x7f)
		for n -= 0x7f; n >= 0x80; n >>= 7 {
			b = append(b, byte(n)|0x80)
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}

// appendDecimalString appends v as an hpack string literal of its decimal
// digits (RFC 7541 §5.2); ten digits at most, so one length byte.
func appendDecimalString(b []byte, v uint32) []byte {
	var num [10]byte
	d := strconv.AppendUint(num[:0], uint64(v), 10)
	b = append(b, byte(len(d)))
	return append(b, d...)
}
