package testtools

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DelayLine is a TCP relay that holds back every byte it carries, in each
// direction, by a one-way delay that can change while it runs: a long path
// between a client and the sidecar, on loopback, without root or netem.
// Bytes keep their order; a chunk read at t is written at t+delay (or when
// the chunk before it was, if later). Blackhole stops it delivering
// anything, like a client whose network vanished without a FIN or RST.
type DelayLine struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // one way, nanoseconds
	dark   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// NewDelayLine relays each connection accepted on ln to target, delaying
// each direction by oneWay. Close stops it.
func NewDelayLine(ln net.Listener, target string, oneWay time.Duration) *DelayLine {
	d := &DelayLine{ln: ln, target: target, dark: make(chan struct{})}
	d.delay.Store(int64(oneWay))
	d.wg.Add(1)
	go d.accept()
	return d
}

// Addr is where clients connect.
func (d *DelayLine) Addr() string { return d.ln.Addr().String() }

// SetDelay changes the one-way delay of the bytes read from now on.
func (d *DelayLine) SetDelay(oneWay time.Duration) { d.delay.Store(int64(oneWay)) }

// Blackhole stops delivering bytes either way; connections stay open.
func (d *DelayLine) Blackhole() { d.once.Do(func() { close(d.dark) }) }

// Close stops accepting, closes every connection and waits for the relay's
// goroutines.
func (d *DelayLine) Close() error {
	err := d.ln.Close()
	d.Blackhole()
	d.mu.Lock()
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
	d.mu.Unlock()
	d.wg.Wait()
	return err
}

func (d *DelayLine) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", d.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		d.mu.Lock()
		d.conns = append(d.conns, c, up)
		d.mu.Unlock()
		d.wg.Add(2)
		go d.pipe(up, c)
		go d.pipe(c, up)
	}
}

// chunk is bytes read at a time, due for writing at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst with the delay: a reader stamps each chunk and a
// writer holds it until it is due.
func (d *DelayLine) pipe(dst, src net.Conn) {
	defer d.wg.Done()
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() { // the writer; pipe waits for it
		defer close(done)
		timer := time.NewTimer(0)
		<-timer.C
		for c := range q {
			// The emulated path's delay: waiting for the chunk's time
			// to come is the point, not a wait for a condition.
			if wait := time.Until(c.due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-d.dark:
				}
			}
			select {
			case <-d.dark:
				continue // dropped: the path is gone
			default:
			}
			if _, err := dst.Write(c.b); err != nil {
				continue
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(d.delay.Load()))}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	select {
	case <-d.dark: // a vanished path carries no FIN either
	default:
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
}
