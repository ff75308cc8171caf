package proxy_test

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hangup-dev/hangup/internal/h2raw"
)

// stallingApp is an HTTP/2 app that answers the first request with
// response HEADERS and the first 100 bytes of a 1000-byte DATA frame, and
// then stalls in the middle of that frame while reading on. It is the app
// that write-blocks, or dies slowly, halfway through a large message.
func stallingApp(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		if fr.WriteSettings() != nil {
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if h, ok := f.(*http2.HeadersFrame); ok {
				var hb bytes.Buffer
				_ = hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
				var partial bytes.Buffer
				_ = http2.NewFramer(&partial, nil).WriteData(h.StreamID, false, make([]byte, 1000))
				if _, err := c.Write(partial.Bytes()[:9+100]); err != nil {
					return
				}
				break
			}
		}
		_, _ = io.Copy(io.Discard, c) // stalled mid-frame; reads on until the relay closes
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestKeepalivePingPassesAStalledPartialFrame: the app stalls in the
// middle of a DATA frame toward a healthy client. The sidecar's keepalive
// PINGs must still reach the client, which answers them, so the client is
// never declared dead. Before, an injected frame waited for the partial
// frame's end: the PINGs never left, and the client was cut off with
// KEEPALIVE_TIMEOUT after time + timeout.
func TestKeepalivePingPassesAStalledPartialFrame(t *testing.T) {
	r := startRelay(t, stallingApp(t), shortKeepalive(nil))
	c, err := h2raw.Dial(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.OpenStream(1, h2raw.GRPCRequest(fullDuplex)); err != nil {
		t.Fatal(err)
	}
	got := 0
	for pings := 0; pings < 3; pings++ {
		f, err := c.ReadUntil(5*time.Second, func(f http2.Frame) bool {
			if d, ok := f.(*http2.DataFrame); ok {
				got += len(d.Data())
			}
			p, ok := f.(*http2.PingFrame)
			return ok && !p.IsAck() || f.Header().Type == http2.FrameGoAway
		})
		if err != nil {
			t.Fatalf("ping %d: no keepalive PING reached the client behind the stalled frame: %v", pings+1, err)
		}
		p, ok := f.(*http2.PingFrame)
		if !ok {
			t.Fatalf("ping %d: got %v, want the sidecar's PING", pings+1, f)
		}
		if err := c.Framer.WritePing(true, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if got != 100 {
		t.Fatalf("client got %d bytes of the partial frame, want the 100 sent", got)
	}
	r.noEvents(t)
}
