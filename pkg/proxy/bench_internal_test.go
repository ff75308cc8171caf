package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
)

type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// BenchmarkForwardDataFrames walks and forwards batches of 1 KiB DATA
// frames on an open stream, as the hot path does, and reports allocations
// per forwarded frame (the goal is zero).
func BenchmarkForwardDataFrames(b *testing.B) {
	srv, _ := New(Config{Upstream: Address{Network: "tcp", Address: "127.0.0.1:1"}, Sink: event.SinkFunc(func(event.Event) {})})
	c := newConn(srv, discardConn{}, discardConn{})
	defer c.stopTimer()
	c.streams.start(1, time.Now())
	f := newClientForwarder(c)
	const perBatch = 16
	var batch []byte
	for range perBatch {
		batch = appendFrameHeader(batch, frameHeader{Length: 1024, Type: 0x0, StreamID: 1})
		batch = append(batch, make([]byte, 1024)...)
	}
	f.takeBatch()
	f.growTo(readBufSize) // a busy connection's buffer
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.n = copy(f.buf, batch)
		if err := f.process(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(testing.AllocsPerRun(100, func() {
		f.n = copy(f.buf, batch)
		_ = f.process()
	}))/perBatch, "allocs/frame")
}
