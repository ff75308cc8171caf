package proxy

import (
	"net"
	"sync"
	"time"
)

// wire is the write side of one socket. Its lock makes it the single owner
// of the socket's writes, so a frame injected by the relay (PING, RST_STREAM,
// GOAWAY) never lands inside a forwarded frame.
//
// Forwarders write whole frames, except a DATA frame whose payload has not
// all arrived yet: they forward what they have and say the batch ended
// mid-frame. Frames injected meanwhile wait in pending and go out at the
// next frame boundary, in the forwarder's next write.
type wire struct {
	conn net.Conn

	mu       sync.Mutex
	midFrame bool   // the last forwarded batch ended inside a frame
	pending  []byte // injected frames waiting for a frame boundary
	err      error  // the first write error; later writes fail with it
}

// writeTimeout bounds an injected write to a peer that stopped reading, so
// that the goroutine injecting (a timer, a cleanup) is never stuck for long.
const writeTimeout = 10 * time.Second

// forward writes a forwarder's batch. boundary is the index in bufs of the
// first segment that starts at a frame boundary (len(*bufs) when the whole
// batch continues a partial frame); endsMidFrame says whether the batch's
// last frame is incomplete. bufs is consumed.
func (w *wire) forward(bufs *net.Buffers, boundary int, endsMidFrame bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if len(w.pending) > 0 && boundary < len(*bufs) {
		// Splice the waiting frames in at the first boundary.
		*bufs = append(*bufs, nil)
		copy((*bufs)[boundary+1:], (*bufs)[boundary:])
		(*bufs)[boundary] = w.pending
		w.pending = nil
	}
	_, err := bufs.WriteTo(w.conn)
	if err != nil {
		w.err = err
		return err
	}
	w.midFrame = endsMidFrame
	return nil
}

// inject writes frames the relay made itself, now if the socket is at a
// frame boundary, else at the next one.
func (w *wire) inject(frames []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.midFrame {
		w.pending = append(w.pending, frames...)
		return nil
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := w.conn.Write(frames)
	_ = w.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		w.err = err
	}
	return err
}

// closeWrite half-closes the socket when it can, else closes it.
func (w *wire) closeWrite() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cw, ok := w.conn.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	_ = w.conn.Close()
}
