package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Connections that do not start with the HTTP/2 client preface are relayed
// as plain TCP: this file sniffs the preface and copies the bytes.

// sniffPreface reads until the bytes read either are the HTTP/2 client
// preface or cannot be. It returns what it read, also with an error.
func sniffPreface(c net.Conn) ([]byte, bool, error) {
	buf := make([]byte, len(clientPreface))
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if !bytes.HasPrefix([]byte(clientPreface), buf[:n]) {
			return buf[:n], false, nil
		}
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return buf[:n], false, nil
			}
			return buf[:n], false, err
		}
	}
	return buf, true, nil
}

// relayTCP copies bytes both ways for a connection that is not HTTP/2,
// passing half-closes on; it knows no streams, only the connection.
//
// A client that half-closes (it has sent its whole request) gets the
// app's whole answer, however long that takes: only Config.TCPIdleTimeout,
// with no byte moving either way, ends the connection. Once the app ends
// its side, the client has Linger to finish: an app that closes has ended
// the conversation in nearly every protocol (HTTP/1.1 "Connection:
// close"), and a client that never notices would otherwise hold the
// connection for the whole idle limit.
func (s *Server) relayTCP(client, app net.Conn, head []byte) {
	start := s.cfg.Now()
	t := &tcpRelay{idle: s.cfg.TCPIdleTimeout}
	t.lastActive.Store(time.Now().UnixNano())
	var up int64
	var upErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, upErr = app.Write(head); upErr == nil {
			up, upErr = t.copy(app, client)
		}
		up += int64(len(head))
		if upErr != nil {
			// Reset or idle: nothing more will cross either way.
			_ = client.Close()
			_ = app.Close()
			return
		}
		closeWrite(app)
	}()
	down, downErr := t.copy(client, app)
	if downErr != nil {
		_ = client.Close()
		_ = app.Close()
	} else {
		closeWrite(client)
		at := time.Now().Add(s.cfg.Linger)
		t.lingerAt.Store(at.UnixNano())
		_ = client.SetReadDeadline(at)
	}
	wg.Wait()
	_ = client.Close()
	_ = app.Close()
	ended := "closed"
	if err := errors.Join(upErr, downErr); err != nil {
		ended = err.Error()
	}
	s.cfg.Logger.Info("connection closed", "protocol", "tcp", "peer", client.RemoteAddr().String(),
		"duration", s.cfg.Now().Sub(start).Round(time.Microsecond),
		"bytes_from_client", up, "bytes_to_client", down, "ended", ended)
}

// errTCPIdle ends a plain-TCP connection that moved no byte for
// Config.TCPIdleTimeout.
var errTCPIdle = errors.New("idle timeout: no byte either way")

// tcpRelay is the state the two directions of a plain-TCP relay share.
type tcpRelay struct {
	idle       time.Duration
	lastActive atomic.Int64 // when a byte last moved either way (unix ns)
	lingerAt   atomic.Int64 // when the client side stops reading (unix ns); 0 while the app is open
}

// deadline is when a read must give up: idle after the last byte either
// way, or the linger's end if that is sooner.
func (t *tcpRelay) deadline() time.Time {
	d := time.Unix(0, t.lastActive.Load()).Add(t.idle)
	if at := t.lingerAt.Load(); at != 0 && at < d.UnixNano() {
		d = time.Unix(0, at)
	}
	return d
}

// copy copies src to dst until src's EOF or the linger's end (nil error),
// an error, or errTCPIdle. The idle limit is shared by both directions, so
// that a long answer to a quiet client is not idle.
func (t *tcpRelay) copy(dst, src net.Conn) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		d := t.deadline()
		if err := src.SetReadDeadline(d); err != nil {
			return total, err
		}
		if nd := t.deadline(); nd.Before(d) {
			// Lingering began between the two lines above, and its own
			// SetReadDeadline may have come before this one's.
			_ = src.SetReadDeadline(nd)
		}
		n, err := src.Read(buf)
		if n > 0 {
			t.lastActive.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(t.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return total, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now().UnixNano()
			if at := t.lingerAt.Load(); at != 0 && now >= at {
				return total, nil
			}
			if now-t.lastActive.Load() < int64(t.idle) {
				continue // the other direction moved bytes meanwhile
			}
			return total, errTCPIdle
		default:
			return total, err
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	_ = c.Close()
}
