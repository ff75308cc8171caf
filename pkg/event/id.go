package event

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"
)

// NewEventID returns a new event id: 32 lower-case hex digits, the first 12
// the Unix time in milliseconds (so ids sort roughly by creation time in
// logs) and 80 random bits. It does not allocate beyond the string and takes
// no lock: the random bits come from the runtime's per-thread generator,
// which is not for secrets but ids need only be unique.
func NewEventID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(time.Now().UnixMilli())<<16)
	binary.BigEndian.PutUint64(b[8:16], rand.Uint64())
	binary.BigEndian.PutUint16(b[6:8], uint16(rand.Uint32()))
	var s [32]byte
	hex.Encode(s[:], b[:])
	return string(s[:])
}
