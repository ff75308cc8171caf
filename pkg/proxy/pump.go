package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/hangup-dev/hangup/internal/park"
	"github.com/hangup-dev/hangup/pkg/event"
)

// readBufSize holds two full default-size frames: a batch usually ends on a
// frame boundary, and a larger frame grows its own buffer.
const readBufSize = 2 * (defaultMaxFrameSize + frameHeaderLen)

// smallBufSize is the buffer a forwarder reads into first each time it
// wakes: a batch of control frames, a call's headers and small messages.
// A read that fills it moves the forwarder to a readBufSize buffer until
// it parks, so a busy connection reads as much per system call as before,
// while one that carries small calls holds an eighth of it for the
// ParkAfter that it waits before parking (issue 15).
const smallBufSize = 4096

// batch is what a forwarder needs only while it runs: the read buffer and
// each batch's output, reused from batch to batch. A parked forwarder
// holds none (an idle connection's memory, issue 15): they come from
// batchPool together and go back together.
type batch struct {
	// buf is small, *big, or a buffer of its own for a frame larger
	// than readBufSize.
	buf   []byte
	small []byte  // smallBufSize, the batch's own
	big   *[]byte // from bigBufPool while buf is it; else nil

	now      time.Time // when the batch was read
	replies  []byte    // frames the relay answers the source with itself
	out      net.Buffers
	wbufs    net.Buffers // out as handed to the write, which consumes it
	scratch  []byte      // frames the relay rewrote in this batch
	runStart int         // start of the bytes of buf not yet added to out
	events   []event.Event
}

var (
	batchPool = sync.Pool{New: func() any {
		b := make([]byte, smallBufSize)
		return &batch{buf: b, small: b}
	}}
	bigBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
)

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
	c    *conn
	side frameRules // the client's (client.go) or the app's (app.go)
	dec  *headerDecoder

	// *batch is nil while nothing is pending: an idle connection holds
	// no buffer. Its fields are used as the forwarder's own.
	*batch
	n    int         // bytes held in buf
	idle *readWaiter // only when sock is nil

	// sock parks the forwarder while its source is quiet, so that an idle
	// connection holds no goroutine; nil when the source cannot park
	// (TLS), and its goroutine waits instead. Set before start.
	sock *park.Socket
	// lingerAt is when reading stops (unix ns) once the other direction
	// has ended; 0 until then. A lingering forwarder waits, never parks.
	lingerAt atomic.Int64
	// quietUntil is the read deadline after which a quiet source parks
	// (unix ns, like lingerAt: 8 bytes where a time.Time takes 24); 0 when
	// none is set.
	quietUntil int64

	// A DATA frame whose payload has not all arrived is forwarded as it
	// comes; passLeft payload bytes of stream passStream are still due.
	passLeft   uint32
	passStream uint32
	passDrop   bool // the frame goes nowhere: its stream was refused
	passPieces bool // the frame goes on in pieces, each a DATA frame
	passFlags  http2.Flags

	// from is who sends the frames this forwarder reads: it picks the
	// source socket and the destination wire from conn (src, dst) rather
	// than each forwarder holding copies. It and wroteHD are bytes in the
	// pass fields' padding.
	from    source
	wroteHD bool // per batch: it forwards HEADERS or DATA (toward the client)
	// busy: a read filled the small buffer since the forwarder last
	// parked, so each batch it takes starts with a big one. It matters
	// where the socket cannot park (TLS) and the batch goes back after
	// every read.
	busy bool

	blk headerBlock
}

// src is the socket this forwarder reads.
func (f *forwarder) src() net.Conn {
	if f.from == fromClient {
		return f.c.client
	}
	return f.c.app
}

// dst is the wire this forwarder writes to.
func (f *forwarder) dst() *wire {
	if f.from == fromClient {
		return &f.c.toApp
	}
	return &f.c.toClient
}

// frameRules is what one direction does with its source's frames beyond
// forwarding them, so that the pump (this file) is the same both ways: the
// client's rules are in client.go, the app's in app.go. Methods that end in
// Locked run with conn.mu held, inside a batch.
type frameRules interface {
	// countRead counts n bytes read from the source.
	countRead(n int)
	// batchLocked starts a batch read at f.now.
	batchLocked()
	// checkLocked vets the header of each non-DATA frame before any of
	// it is forwarded. (dataLocked vets DATA frames: one call per frame
	// on the hot path.)
	checkLocked(h frameHeader) error
	// dataLocked vets and admits the DATA frame at off, of which the buffer holds
	// up to end; when it drops the frame instead it returns the offset
	// after what it dropped, else -1.
	dataLocked(h frameHeader, off, end int) (int, error)
	// frameLimit is the largest non-DATA frame accepted, header included.
	frameLimit() int
	// frameLocked handles a complete non-DATA frame at off.
	frameLocked(h frameHeader, frame []byte, off int) error
	// batchDoneLocked ends a batch, before its frames are written.
	batchDoneLocked()
	// ended hands the direction's end (err) to the connection.
	ended(err error)
}

// headerBlock is a HEADERS or PUSH_PROMISE frame waiting for its
// CONTINUATION frames (RFC 9113 §6.10). Nothing may be sent between them.
type headerBlock struct {
	active    bool
	streamID  uint32
	endStream bool
	hasPrio   bool    // the HEADERS frame had priority fields: prio
	prio      [5]byte // in place, not a slice: an idle forwarder holds this struct
	frag      []byte  // the header block fragments so far
	raw       []byte  // app → client: the frames so far, forwarded unchanged
}

// priority returns the HEADERS frame's priority fields, nil when it had none.
func (b *headerBlock) priority() []byte {
	if !b.hasPrio {
		return nil
	}
	return b.prio[:]
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
			f.takeBatch()
			if len(initial) > len(f.buf) {
				f.growTo(len(initial))
			}
			f.n = copy(f.buf, initial)
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
	f.side.ended(err)
	// The read that saw the end took a batch like any other: back to the
	// pool with it, or every connection's end is garbage to collect.
	if f.batch != nil {
		f.releaseBatch()
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
		if f.batch == nil {
			if f.sock == nil {
				if err := f.idle.wait(); err != nil {
					return readError{err}
				}
			}
			f.takeBatch()
		}
		f.armQuiet()
		nr, err := f.src().Read(f.buf[f.n:])
		if nr > 0 {
			f.side.countRead(nr)
			if perr := f.consume(nr); perr != nil {
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
			f.releaseBatch()
			f.parked()
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
			f.releaseBatch()
		}
	}
}

// consume processes nr bytes just read into the buffer after its f.n
// pending ones. When they filled a small buffer the source has more, and
// the next read gets a big one.
func (f *forwarder) consume(nr int) error {
	filled := f.n+nr == len(f.buf)
	f.n += nr
	if err := f.process(); err != nil {
		return err
	}
	if filled && len(f.buf) < readBufSize {
		f.growTo(readBufSize)
		f.busy = true
	}
	return nil
}

// takeBatch takes a buffer and batch state from the pool: a big buffer
// when a read filled the small one since the forwarder last parked.
func (f *forwarder) takeBatch() {
	f.batch = batchPool.Get().(*batch)
	if f.busy {
		f.growTo(readBufSize)
	}
}

// parked forgets that the source was busy: the next wake reads into the
// small buffer first.
func (f *forwarder) parked() { f.busy = false }

// growTo moves the bytes pending in the buffer to a larger one: a pooled
// readBufSize buffer when need fits in one, else one of need bytes.
func (f *forwarder) growTo(need int) {
	b := f.batch
	var nb []byte
	var big *[]byte
	if need <= readBufSize {
		big = bigBufPool.Get().(*[]byte)
		nb = *big
	} else {
		nb = make([]byte, need)
	}
	copy(nb, b.buf[:f.n])
	if b.big != nil {
		bigBufPool.Put(b.big)
	}
	b.buf, b.big = nb, big
}

// releaseBatch gives the buffers and batch state back while nothing is
// pending in the buffer. The last batch's events are cleared so that the
// pool does not keep their strings alive.
func (f *forwarder) releaseBatch() {
	b := f.batch
	if b.big != nil {
		bigBufPool.Put(b.big)
		b.big = nil
	}
	clear(b.events)
	b.buf, b.events = b.small, b.events[:0]
	batchPool.Put(b)
	f.batch = nil
}

// armQuiet sets the read deadline after which a quiet source parks. It
// moves the deadline at most once per half period, not once per batch.
func (f *forwarder) armQuiet() {
	if f.sock == nil || f.lingerAt.Load() != 0 {
		return
	}
	if now := time.Now(); time.Duration(f.quietUntil-now.UnixNano()) < f.c.srv.cfg.ParkAfter/2 {
		at := now.Add(f.c.srv.cfg.ParkAfter)
		f.quietUntil = at.UnixNano()
		_ = f.src().SetReadDeadline(at)
	}
}

// clearDeadline drops the quiet-wait deadline and reports whether the
// forwarder lingers, in which case the linger deadline is set instead.
func (f *forwarder) clearDeadline() bool {
	f.quietUntil = 0
	_ = f.src().SetReadDeadline(time.Time{})
	if at := f.lingerAt.Load(); at != 0 {
		// linger set its deadline before the line above cleared it.
		_ = f.src().SetReadDeadline(time.Unix(0, at))
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
	_ = f.src().SetReadDeadline(at)
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
//
// State that outlives a batch is in fields (the DATA frame passing
// through, the header block in progress, the buffer); the batch's output
// is in fields reused from batch to batch (out, scratch, replies, events,
// runStart); where the walk stopped is what walkLocked returns.
func (f *forwarder) process() error {
	b := f.buf[:f.n]
	f.out, f.scratch, f.runStart, f.events = f.out[:0], f.scratch[:0], 0, f.events[:0]

	f.c.mu.Lock()
	f.now, f.wroteHD, f.replies = f.c.srv.cfg.Now(), false, f.replies[:0]
	f.side.batchLocked()
	off, boundary, midFrame, err := f.walkLocked(b)
	// Frames before a bad one still go on, so that a frame forwarded in
	// part is completed and the relay's own frames can follow it.
	f.flushRun(off)
	f.side.batchDoneLocked()
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
			_ = f.dst().forward(&f.wbufs, boundary, midFrame)
		}
		return err
	}
	return f.write(b[off:], boundary, midFrame)
}

// walkLocked walks the frames of the batch b: it adds what goes on to
// f.out, applies each frame to the connection's state through f.side, and
// stops at an incomplete frame or an error. It returns how much of b it
// walked (the rest waits for more), the index in f.out of the first
// segment at a frame boundary and whether the destination is left inside
// a frame (for wire.forward), and the error of the frame at off.
func (f *forwarder) walkLocked(b []byte) (off, boundary int, midFrame bool, err error) {
	if f.passLeft > 0 {
		off, midFrame = f.continuePassLocked(b)
		if midFrame || f.passLeft == 0 && !f.passPieces {
			boundary = len(f.out)
		}
	}
	for !midFrame && f.passLeft == 0 && len(b)-off >= frameHeaderLen {
		h := parseFrameHeader(b[off:])
		isData := h.Type == http2.FrameData
		if !isData {
			if err = f.side.checkLocked(h); err != nil {
				return
			}
		}
		if f.blk.active && (h.Type != http2.FrameContinuation || h.StreamID != f.blk.streamID) {
			err = connError{Code: http2.ErrCodeProtocol, Reason: "a header block was interrupted by another frame"}
			return
		}
		if isData {
			var next int
			if next, err = f.side.dataLocked(h, off, len(b)); err != nil {
				return
			} else if next >= 0 {
				off = next // dropped
				continue
			}
			f.wroteHD = true
			avail := len(b) - off - frameHeaderLen
			if int(h.Length) > avail {
				return f.partialDataLocked(h, off, avail), boundary, h.Flags.Has(http2.FlagDataPadded), nil
			}
			f.onDataLocked(h, int(h.Length))
			off += frameHeaderLen + int(h.Length)
			continue
		}
		if size := frameHeaderLen + int(h.Length); size > f.side.frameLimit() {
			err = connError{Code: http2.ErrCodeFrameSize, Reason: "frame larger than SETTINGS_MAX_FRAME_SIZE"}
			return
		} else if size > len(b)-off {
			return // wait for the rest
		}
		frame := b[off : off+frameHeaderLen+int(h.Length)]
		if err = f.side.frameLocked(h, frame, off); err != nil {
			return
		}
		off += len(frame)
	}
	return
}

// partialDataLocked starts passing on the DATA frame at off, of which only
// avail payload bytes have arrived, and returns the end of the batch: the
// rest of the frame follows as it comes.
func (f *forwarder) partialDataLocked(h frameHeader, off, avail int) int {
	f.passLeft, f.passStream, f.passFlags = h.Length-uint32(avail), h.StreamID, h.Flags
	end := off + frameHeaderLen + avail
	if h.Flags.Has(http2.FlagDataPadded) {
		// Padding cannot be split: the frame goes on whole, and injected
		// frames wait for its end.
		f.onDataLocked(h, avail)
		return end
	}
	// In pieces, each a DATA frame of its own: injected frames never wait
	// behind a stalled partial frame.
	f.flushRun(off)
	f.runStart = off + frameHeaderLen
	if avail > 0 {
		f.dataPieceLocked(h.StreamID, uint32(avail), 0)
	}
	f.passPieces = true
	return end
}

// write sends the batch on: the relay's replies to the source, then the
// frames walked; rest, an incomplete frame, waits for the next read.
func (f *forwarder) write(rest []byte, boundary int, midFrame bool) error {
	if len(f.replies) > 0 {
		if rerr := f.c.toClient.inject(f.replies); rerr != nil {
			return writeError{rerr}
		}
	}
	if len(f.out) > 0 {
		// WriteTo consumes the slice it is given: hand it a copy of the
		// header so that f.out keeps its backing array for the next batch.
		f.wbufs = f.out
		if werr := f.dst().forward(&f.wbufs, boundary, midFrame); werr != nil {
			return writeError{werr}
		}
	}
	f.keepRest(rest)
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
	f.n = copy(f.buf, rest)
	if f.n >= frameHeaderLen {
		if need := frameHeaderLen + int(parseFrameHeader(f.buf).Length); need > len(f.buf) {
			f.growTo(need)
		}
	}
}

// flushRun adds the forwarded-as-is bytes up to end to the batch.
func (f *forwarder) flushRun(end int) {
	if end > f.runStart {
		f.out = append(f.out, f.buf[f.runStart:end])
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
	s.endFrom(f.from)
	f.c.retireIfClosedLocked(s, f.now)
}

// countDataLocked adds n payload bytes to the stream's count and returns the
// stream, nil when it is not open.
func (f *forwarder) countDataLocked(streamID uint32, n int) *stream {
	s := f.c.streams.get(streamID)
	if s == nil {
		return nil
	}
	s.dataFrom(f.from, n)
	return s
}
