package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/notify"
)

// readBufSize holds two full default-size frames: a batch usually ends on a
// frame boundary, and a larger frame grows its own buffer.
const readBufSize = 2 * (defaultMaxFrameSize + frameHeaderLen)

var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// forwarder relays the frames of one direction of a connection. It runs on
// one goroutine at a time and owns everything below; the stream table it
// shares with the other direction is guarded by conn.mu. While its source
// is quiet it runs on none: it parks, and readiness starts a new goroutine.
//
// It forwards in batches: read what the socket has, walk the frame headers
// in the buffer, and write every complete frame on in one write. DATA
// payloads are counted, never copied or decoded; header blocks are decoded
// (and, toward the app, re-encoded); other frames are parsed in place.
type forwarder struct {
	c      *conn
	toApp  bool // client → app; otherwise app → client
	src    net.Conn
	dst    *wire
	dec    *headerDecoder
	enc    *requestEncoder // toApp only
	maxBuf int             // largest frame accepted, header included

	buf  *[]byte     // nil while nothing is pending: an idle connection holds no buffer
	n    int         // bytes held in *buf
	idle *readWaiter // only when sock is nil

	// sock parks the forwarder while its source is quiet, so that an idle
	// connection holds no goroutine; nil when the source cannot park
	// (TLS), and its goroutine waits instead. Set before start.
	sock *park.Socket
	// lingerAt is when reading stops (unix ns) once the other direction
	// has ended; 0 until then. A lingering forwarder waits, never parks.
	lingerAt atomic.Int64
	// quietUntil is the read deadline after which a quiet source parks;
	// zero when none is set.
	quietUntil time.Time

	// A DATA frame whose payload has not all arrived is forwarded as it
	// comes; passLeft payload bytes of stream passStream are still due.
	passLeft   uint32
	passStream uint32
	passDrop   bool // the frame goes nowhere: its stream was refused
	passPieces bool // the frame goes on in pieces, each a DATA frame
	passFlags  http2.Flags

	blk headerBlock

	// Per batch, reused.
	now      time.Time // when the batch was read
	wroteHD  bool      // the batch forwards HEADERS or DATA (toward the client)
	replies  []byte    // frames the relay answers the source with itself
	out      net.Buffers
	wbufs    net.Buffers // out as handed to the write, which consumes it
	scratch  []byte      // frames the relay rewrote in this batch
	runStart int         // start of the bytes of buf not yet added to out
	events   []notify.Event
}

// headerBlock is a HEADERS or PUSH_PROMISE frame waiting for its
// CONTINUATION frames (RFC 9113 §6.10). Nothing may be sent between them.
type headerBlock struct {
	active    bool
	streamID  uint32
	endStream bool
	priority  []byte // nil when the HEADERS frame had none
	prioBuf   [5]byte
	frag      []byte // the header block fragments so far
	raw       []byte // app → client: the frames so far, forwarded unchanged
}

// readError is a failed read of the source socket.
type readError struct{ err error }

func (e readError) Error() string { return "read: " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// writeError is a failed write to the destination socket.
type writeError struct{ err error }

func (e writeError) Error() string { return "write: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// errParked ends a forwarder's goroutine, not the forwarder: its source had
// nothing to read, and its socket's readiness starts a new one.
var errParked = errors.New("parked")

// start relays on a new goroutine, after the initial bytes (read while
// sniffing for the preface). The server's WaitGroup counts the forwarder,
// parked or running, until it ends.
func (f *forwarder) start(initial []byte) {
	go func() {
		if len(initial) > 0 {
			f.buf = bufPool.Get().(*[]byte)
			f.n = copy(*f.buf, initial)
			if err := f.process(); err != nil {
				f.done(err)
				return
			}
		}
		f.loop()
	}()
}

// resume is the socket's resume function: it runs on the poller's
// goroutine, or on the one that woke the socket, and must not block.
func (f *forwarder) resume() { go f.loop() }

// loop relays until the forwarder parks or ends.
func (f *forwarder) loop() {
	if err := f.run(); err != errParked {
		f.done(err)
	}
}

// done hands the forwarder's end to its connection.
func (f *forwarder) done(err error) {
	if f.sock != nil {
		f.sock.Deregister()
	}
	if f.toApp {
		f.c.upstreamEnded(err)
	} else {
		f.c.downstreamEnded(err)
	}
	f.c.forwarderDone()
}

// run relays until the source has been quiet for Config.ParkAfter and the
// forwarder parks (errParked), or until the source ends or an error; then
// it returns readError, writeError or connError.
//
// While the source is busy the forwarder keeps its buffer and reads at
// once, so that the runtime's poller does the waiting between batches: no
// extra system call, no park and resume. A forwarder that cannot park
// waits for bytes without a buffer instead.
func (f *forwarder) run() error {
	for {
		if f.buf == nil {
			if f.sock == nil {
				if err := f.idle.wait(); err != nil {
					return readError{err}
				}
			}
			f.buf = bufPool.Get().(*[]byte)
		}
		f.armQuiet()
		nr, err := f.src.Read((*f.buf)[f.n:])
		if nr > 0 {
			f.n += nr
			if f.toApp {
				f.c.bytesFromClient.Add(uint64(nr))
			} else {
				f.c.bytesToClient.Add(uint64(nr))
			}
			if perr := f.process(); perr != nil {
				return perr
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) || f.lingerOver() {
				return readError{err}
			}
			// Quiet for ParkAfter. In the middle of a frame it is not
			// idle: read on.
			if f.clearDeadline() || f.n > 0 {
				continue
			}
			f.releaseBuf()
			if f.sock.Park() != nil {
				continue // closed meanwhile: the Read says so
			}
			if f.lingerAt.Load() != 0 {
				// Lingering began while this parked, and its Wake may
				// have come before the Park: a parked forwarder would
				// miss the deadline.
				f.sock.Wake()
			}
			return errParked
		}
		if f.n == 0 && f.sock == nil {
			f.releaseBuf()
		}
	}
}

// releaseBuf gives the read buffer back while nothing is pending in it.
func (f *forwarder) releaseBuf() {
	if len(*f.buf) == readBufSize {
		bufPool.Put(f.buf)
	}
	f.buf = nil
}

// armQuiet sets the read deadline after which a quiet source parks. It
// moves the deadline at most once per half period, not once per batch.
func (f *forwarder) armQuiet() {
	if f.sock == nil || f.lingerAt.Load() != 0 {
		return
	}
	if now := time.Now(); f.quietUntil.Sub(now) < f.c.srv.cfg.ParkAfter/2 {
		f.quietUntil = now.Add(f.c.srv.cfg.ParkAfter)
		_ = f.src.SetReadDeadline(f.quietUntil)
	}
}

// clearDeadline drops the quiet-wait deadline and reports whether the
// forwarder lingers, in which case the linger deadline is set instead.
func (f *forwarder) clearDeadline() bool {
	f.quietUntil = time.Time{}
	_ = f.src.SetReadDeadline(time.Time{})
	if at := f.lingerAt.Load(); at != 0 {
		// linger set its deadline before the line above cleared it.
		_ = f.src.SetReadDeadline(time.Unix(0, at))
		return true
	}
	return false
}

// lingerOver reports whether the forwarder lingered and its time is up.
func (f *forwarder) lingerOver() bool {
	at := f.lingerAt.Load()
	return at != 0 && time.Now().UnixNano() >= at
}

// linger gives the forwarder d more to read, then ends it: the other
// direction has ended.
func (f *forwarder) linger(d time.Duration) {
	at := time.Now().Add(d)
	f.lingerAt.Store(at.UnixNano())
	_ = f.src.SetReadDeadline(at)
	f.wake()
}

// wake hands a parked forwarder its socket back, so that it sees a close
// or a deadline the poller cannot report.
func (f *forwarder) wake() {
	if f != nil && f.sock != nil {
		f.sock.Wake()
	}
}

// process walks the frames in the buffer, writes every complete one on and
// keeps an incomplete one for the next read.
func (f *forwarder) process() error {
	b := (*f.buf)[:f.n]
	f.out, f.scratch, f.runStart, f.events = f.out[:0], f.scratch[:0], 0, f.events[:0]
	off, boundary, midFrame := 0, 0, false

	f.c.mu.Lock()
	f.now, f.wroteHD, f.replies = f.c.srv.cfg.Now(), false, f.replies[:0]
	if f.toApp {
		f.c.kaFrameReadLocked(f.now)
		f.c.lastRead.Store(f.now.UnixNano())
	}
	if f.passLeft > 0 {
		off, midFrame = f.continuePassLocked(b)
		if midFrame || f.passLeft == 0 && !f.passPieces {
			boundary = len(f.out)
		}
	}
	var err error
	for !midFrame && f.passLeft == 0 && len(b)-off >= frameHeaderLen {
		h := parseFrameHeader(b[off:])
		if f.toApp {
			if err = checkClientFrame(h); err != nil {
				break
			}
		}
		if f.blk.active && (h.Type != http2.FrameContinuation || h.StreamID != f.blk.streamID) {
			err = connError{Code: http2.ErrCodeProtocol, Reason: "a header block was interrupted by another frame"}
			break
		}
		if h.Type == http2.FrameData {
			if f.toApp {
				if err = f.c.checkDataLocked(h); err != nil {
					break
				}
				if h.Length > f.c.appMaxFrame.Load() {
					err = connError{Code: http2.ErrCodeFrameSize, Reason: "DATA frame larger than SETTINGS_MAX_FRAME_SIZE"}
					break
				}
				if f.c.refuse.dropsLocked(h.StreamID) && f.c.streams.get(h.StreamID) == nil {
					off = f.dropData(h, off, len(b))
					continue
				}
			}
			f.wroteHD = true
			avail := len(b) - off - frameHeaderLen
			if int(h.Length) > avail {
				// Forward what has arrived; the rest follows as it comes.
				f.passLeft, f.passStream, f.passFlags = h.Length-uint32(avail), h.StreamID, h.Flags
				if h.Flags.Has(http2.FlagDataPadded) {
					// Padding cannot be split: the frame goes on whole,
					// and injected frames wait for its end.
					f.onDataLocked(h, avail)
					off, midFrame = len(b), true
					break
				}
				// In pieces, each a DATA frame of its own: injected
				// frames never wait behind a stalled partial frame.
				f.flushRun(off)
				f.runStart = off + frameHeaderLen
				if avail > 0 {
					f.dataPieceLocked(h.StreamID, uint32(avail), 0)
				}
				f.passPieces = true
				off = len(b)
				break
			}
			f.onDataLocked(h, int(h.Length))
			off += frameHeaderLen + int(h.Length)
			continue
		}
		if size := frameHeaderLen + int(h.Length); size > f.frameLimit() {
			err = connError{Code: http2.ErrCodeFrameSize, Reason: "frame larger than SETTINGS_MAX_FRAME_SIZE"}
			break
		} else if size > len(b)-off {
			break // wait for the rest
		}
		frame := b[off : off+frameHeaderLen+int(h.Length)]
		if f.toApp {
			err = f.onClientFrameLocked(h, frame, off)
		} else {
			err = f.onAppFrameLocked(h, frame, off)
		}
		if err != nil {
			break
		}
		off += len(frame)
	}
	// Frames before a bad one still go on, so that a frame forwarded in
	// part is completed and the relay's own frames can follow it.
	f.flushRun(off)
	if f.wroteHD && !f.toApp {
		f.c.ka.HeadersOrDataWritten(f.now)
	}
	runActions := len(f.c.actions) > 0
	f.c.mu.Unlock()

	for _, ev := range f.events {
		f.c.publish(ev)
	}
	if runActions {
		defer f.c.runActions()
	}
	if err != nil {
		if len(f.out) > 0 {
			f.wbufs = f.out
			_ = f.dst.forward(&f.wbufs, boundary, midFrame)
		}
		return err
	}
	if len(f.replies) > 0 {
		if rerr := f.c.toClient.inject(f.replies); rerr != nil {
			return writeError{rerr}
		}
	}
	if len(f.out) > 0 {
		// WriteTo consumes the slice it is given: hand it a copy of the
		// header so that f.out keeps its backing array for the next batch.
		f.wbufs = f.out
		if werr := f.dst.forward(&f.wbufs, boundary, midFrame); werr != nil {
			return writeError{werr}
		}
	}
	f.keepRest(b[off:])
	return nil
}

// continuePassLocked forwards, in pieces or as they come, or drops the bytes of
// the DATA frame in progress at the start of b. It returns the offset
// after them and whether the destination is left inside a frame.
func (f *forwarder) continuePassLocked(b []byte) (int, bool) {
	k := min(int(f.passLeft), len(b))
	f.passLeft -= uint32(k)
	switch {
	case f.passDrop:
		f.passDrop = f.passLeft > 0
		f.runStart = k
		return k, false
	case f.passPieces:
		var flags http2.Flags
		if f.passLeft == 0 {
			flags = f.passFlags & http2.FlagDataEndStream
		}
		if k > 0 {
			f.dataPieceLocked(f.passStream, uint32(k), flags)
		}
		f.flushRun(k)
		f.passPieces = f.passLeft > 0
		return k, false
	default:
		f.countDataLocked(f.passStream, k)
		f.flushRun(k)
		return k, f.passLeft > 0
	}
}

// dataPieceLocked puts the header of a DATA frame carrying the next n payload
// bytes of a split frame in the batch, and applies it to the stream. The
// pieces add up to the frame, so flow control is unchanged.
func (f *forwarder) dataPieceLocked(streamID, n uint32, flags http2.Flags) {
	h := frameHeader{Length: n, Type: http2.FrameData, Flags: flags, StreamID: streamID}
	start := len(f.scratch)
	f.scratch = appendFrameHeader(f.scratch, h)
	f.out = append(f.out, f.scratch[start:])
	f.onDataLocked(h, int(n))
}

// dropData drops the DATA frame at off, of which the buffer holds up to
// end, and gives its flow-control window back to the client; it returns
// the offset after what it dropped.
func (f *forwarder) dropData(h frameHeader, off, end int) int {
	if h.Length > 0 {
		f.replies = appendWindowUpdate(f.replies, 0, h.Length)
	}
	f.flushRun(off)
	size := frameHeaderLen + int(h.Length)
	if size > end-off {
		f.passLeft, f.passStream, f.passDrop = uint32(size-(end-off)), h.StreamID, true
		f.runStart = end
		return end
	}
	f.runStart = off + size
	return off + size
}

// keepRest moves an incomplete frame to the front of the buffer, growing
// the buffer when the frame is larger than it.
func (f *forwarder) keepRest(rest []byte) {
	f.n = len(rest)
	if f.n == 0 {
		return
	}
	need := len(*f.buf)
	if f.n >= frameHeaderLen {
		need = max(need, frameHeaderLen+int(parseFrameHeader(rest).Length))
	}
	if need > len(*f.buf) {
		nb := make([]byte, need)
		copy(nb, rest)
		if len(*f.buf) == readBufSize {
			bufPool.Put(f.buf)
		}
		f.buf = &nb
		return
	}
	copy(*f.buf, rest)
}

func (f *forwarder) frameLimit() int {
	if f.toApp {
		return frameHeaderLen + int(f.c.appMaxFrame.Load())
	}
	return f.maxBuf
}

// flushRun adds the forwarded-as-is bytes up to end to the batch.
func (f *forwarder) flushRun(end int) {
	if end > f.runStart {
		f.out = append(f.out, (*f.buf)[f.runStart:end])
	}
	f.runStart = end
}

// replace puts repl in the batch instead of the frame at off (nil drops it).
func (f *forwarder) replace(off int, frame, repl []byte) {
	f.flushRun(off)
	if len(repl) > 0 {
		f.out = append(f.out, repl)
	}
	f.runStart = off + len(frame)
}

// onDataLocked counts n payload bytes of a DATA frame and applies END_STREAM.
func (f *forwarder) onDataLocked(h frameHeader, n int) {
	s := f.countDataLocked(h.StreamID, n)
	if s == nil || !h.Flags.Has(http2.FlagDataEndStream) {
		return
	}
	if f.toApp {
		s.endFromClient()
	} else {
		s.endFromApp()
	}
	f.c.retireIfClosedLocked(s, f.now)
}

// countDataLocked adds n payload bytes to the stream's count and returns the
// stream, nil when it is not open.
func (f *forwarder) countDataLocked(streamID uint32, n int) *stream {
	s := f.c.streams.get(streamID)
	if s == nil {
		return nil
	}
	if f.toApp {
		s.bytesFromClient += uint64(n)
	} else {
		s.bytesToClient += uint64(n)
	}
	return s
}

// onClientFrameLocked handles a complete non-DATA frame from the client.
func (f *forwarder) onClientFrameLocked(h frameHeader, frame []byte, off int) error {
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
			f.streamErrorLocked(h.StreamID, off, frame, "WINDOW_UPDATE with increment 0")
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
			f.blk.priority = f.blk.prioBuf[:copy(f.blk.prioBuf[:], prio)]
		}
		return f.continueRequestBlockLocked(h, frame, off)
	case http2.FrameContinuation:
		if !f.blk.active {
			return connError{Code: http2.ErrCodeProtocol, Reason: "CONTINUATION without HEADERS"}
		}
		f.blk.frag = append(f.blk.frag, p...)
		return f.continueRequestBlockLocked(h, frame, off)
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
func (f *forwarder) streamErrorLocked(id uint32, off int, frame []byte, reason string) {
	f.replies = appendRSTStream(f.replies, id, http2.ErrCodeProtocol)
	s := f.c.streams.get(id)
	if s == nil {
		f.replace(off, frame, nil)
	} else {
		start := len(f.scratch)
		f.scratch = appendRSTStream(f.scratch, id, http2.ErrCodeCancel)
		f.replace(off, frame, f.scratch[start:])
		s.span.RSTStream(f.now, uint32(http2.ErrCodeProtocol), notify.InitiatorSidecar)
		if s.appDone() {
			f.c.resetStreamLocked(s, f.now, notify.ReasonUnspecified, notify.InitiatorUnspecified)
		} else {
			f.events = append(f.events, f.c.streamEventLocked(s, notify.ReasonProtocolError, notify.InitiatorSidecar, uint32(http2.ErrCodeProtocol), reason, f.now))
			f.c.resetStreamLocked(s, f.now, notify.ReasonProtocolError, notify.InitiatorSidecar)
		}
	}
	f.c.refuse.refuseLocked(id)
	f.c.srv.cfg.Logger.Debug("client stream error", "conn", f.c.id, "stream", id, "reason", reason)
}

// continueRequestBlockLocked bounds the header block and, once END_HEADERS has
// arrived, re-encodes it for the app in place of the client's frames.
func (f *forwarder) continueRequestBlockLocked(h frameHeader, frame []byte, off int) error {
	if len(f.blk.frag) > int(f.c.srv.cfg.MaxHeaderListSize) {
		return abuse(http2.ErrCodeEnhanceYourCalm, AbuseHeaderListTooBig, "header block larger than "+strconv.Itoa(int(f.c.srv.cfg.MaxHeaderListSize))+" bytes (CONTINUATION flood?)")
	}
	if !h.Flags.Has(http2.FlagHeadersEndHeaders) {
		f.replace(off, frame, nil)
		return nil
	}
	f.blk.active = false
	f.dec.setAllowedTableSize(f.c.appHeaderTable.Load())
	f.enc.setTableLimit(f.c.appHeaderTable.Load())
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
	block := f.enc.encode(fields, memo, isRequest, f.c.id, id, trace)
	start := len(f.scratch)
	f.scratch = appendHeaderFrames(f.scratch, id, f.blk.endStream, f.blk.priority, block, f.c.appMaxFrame.Load())
	f.replace(off, frame, f.scratch[start:])
	if s != nil && f.blk.endStream {
		s.endFromClient()
		f.c.retireIfClosedLocked(s, f.now)
	}
	return nil
}

// onAppFrameLocked handles a complete non-DATA frame from the app.
func (f *forwarder) onAppFrameLocked(h frameHeader, frame []byte, off int) error {
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
		return f.continueResponseBlockLocked(h, frame, off)
	case http2.FrameContinuation:
		if !f.blk.active {
			return connError{Code: http2.ErrCodeProtocol, Reason: "CONTINUATION without HEADERS from the app"}
		}
		f.blk.frag = append(f.blk.frag, p...)
		return f.continueResponseBlockLocked(h, frame, off)
	case http2.FrameRSTStream:
		if len(p) == 4 {
			f.c.onAppResetLocked(h.StreamID, http2.ErrCode(binary.BigEndian.Uint32(p)))
		}
	case http2.FrameSettings:
		if !h.Flags.Has(http2.FlagSettingsAck) {
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

// continueResponseBlockLocked decodes the app's header blocks, to keep the
// decoder in step and read grpc-status, and forwards them unchanged, held
// back until END_HEADERS so that nothing is injected inside a block.
func (f *forwarder) continueResponseBlockLocked(h frameHeader, frame []byte, off int) error {
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

// forEachSetting calls fn for each setting of a SETTINGS payload
// (RFC 9113 §6.5.1); a malformed length is left for the receiver to reject.
func forEachSetting(p []byte, fn func(http2.SettingID, uint32)) {
	for ; len(p) >= 6; p = p[6:] {
		fn(http2.SettingID(binary.BigEndian.Uint16(p)), binary.BigEndian.Uint32(p[2:]))
	}
}
