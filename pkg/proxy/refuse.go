package proxy

// refusals are the client's streams the app never sees or has let go,
// and what the relay does with the client's frames on them. Guarded by
// conn.mu.
//
// After a GOAWAY, the relay's final one (max-age, drain) or the app's
// own, new streams above its last-stream-id are refused: the client gets
// RST_STREAM(REFUSED_STREAM), and it may retry them elsewhere because no
// server processed them (RFC 9113 §6.8). Streams above the app's
// last-stream-id were never processed either: they leave the stream
// table with no event. Any frame the client sends on such a stream, and
// on a stream refused one by one (a malformed request), is dropped: for
// the app that stream is idle, and a strict app (x/net's server) answers
// a frame on an idle stream with a connection error that would take the
// streams still running with it. The flow-control window a dropped DATA
// frame used is given back to the client, as the app would have.
type refusals struct {
	active bool // a GOAWAY is out: streams above line are refused
	// The next slots of the ring buffers below: bytes beside active,
	// where they cost no padding.
	oneNext, appNext uint8
	line             uint32 // the lowest last-stream-id of those GOAWAYs
	top              uint32 // the highest stream id the relay refused

	// Streams refused one by one, and streams the app reset: ring
	// buffers of the latest few, for the client's frames in flight when
	// the RST_STREAM crossed them (a client sees the reset within a
	// round trip, so a few suffice).
	one      [8]uint32
	appReset [8]uint32
}

// goAwayLocked draws the line of a GOAWAY with this last-stream-id.
func (r *refusals) goAwayLocked(last uint32) {
	if !r.active || last < r.line {
		r.line = last
	}
	r.active = true
}

// refusesLocked reports whether a new stream with this id is refused.
func (r *refusals) refusesLocked(id uint32) bool { return r.active && id > r.line }

// refuseLocked records that the relay refused stream id.
func (r *refusals) refuseLocked(id uint32) {
	r.top = max(r.top, id)
	if !r.refusesLocked(id) {
		r.one[r.oneNext] = id
		r.oneNext = (r.oneNext + 1) % uint8(len(r.one))
	}
}

// dropsLocked reports whether a frame on stream id, which is not open,
// goes nowhere: the stream was refused, or lies above a GOAWAY's line.
func (r *refusals) dropsLocked(id uint32) bool {
	if id == 0 || r.top == 0 && !r.active {
		return false // nothing refused yet: the common case, on every frame
	}
	if r.refusesLocked(id) {
		return true
	}
	for _, x := range r.one {
		if x == id {
			return true
		}
	}
	return false
}

// appResetLocked records that the app reset stream id.
func (r *refusals) appResetLocked(id uint32) {
	r.appReset[r.appNext] = id
	r.appNext = (r.appNext + 1) % uint8(len(r.appReset))
}

// appResetRecentlyLocked reports whether the app reset stream id lately:
// the client's HEADERS on it may have crossed the reset and are no error.
func (r *refusals) appResetRecentlyLocked(id uint32) bool {
	for _, x := range r.appReset {
		if x == id {
			return true
		}
	}
	return false
}
