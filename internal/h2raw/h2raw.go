// Package h2raw is a hand-driven HTTP/2 client for tests and the demo: it
// speaks through x/net's Framer and can misbehave on purpose, which a real
// gRPC client never does.
package h2raw

import (
	"bytes"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// Client is one raw HTTP/2 connection.
type Client struct {
	Conn   net.Conn
	Framer *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
}

// Dial connects to addr and sends the client preface and an empty SETTINGS.
func Dial(addr string) (*Client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cl := &Client{Conn: c, Framer: http2.NewFramer(c, c)}
	cl.enc = hpack.NewEncoder(&cl.encBuf)
	cl.Framer.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		c.Close()
		return nil, fmt.Errorf("write preface: %w", err)
	}
	if err := cl.Framer.WriteSettings(); err != nil {
		c.Close()
		return nil, fmt.Errorf("write settings: %w", err)
	}
	return cl, nil
}

// Encode hpack-encodes fields with the connection's encoder.
func (c *Client) Encode(fields ...hpack.HeaderField) []byte {
	c.encBuf.Reset()
	for _, f := range fields {
		_ = c.enc.WriteField(f)
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// GRPCRequest returns the header fields of a gRPC call to method
// ("/pkg.Service/Method") plus extra name/value pairs.
func GRPCRequest(method string, extra ...string) []hpack.HeaderField {
	f := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method},
		{Name: ":authority", Value: "hangup.test"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f = append(f, hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return f
}

// OpenStream sends a request HEADERS frame without END_STREAM.
func (c *Client) OpenStream(id uint32, fields []hpack.HeaderField) error {
	return c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.Encode(fields...), EndHeaders: true})
}

// SendMessage sends msg as one gRPC length-prefixed message.
func (c *Client) SendMessage(id uint32, msg []byte, end bool) error {
	b := make([]byte, 5+len(msg))
	b[1], b[2], b[3], b[4] = byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg))
	copy(b[5:], msg)
	return c.Framer.WriteData(id, end, b)
}

// Reset closes the TCP connection with RST instead of FIN.
func (c *Client) Reset() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Conn.Close()
}

// Close closes the connection with FIN.
func (c *Client) Close() error { return c.Conn.Close() }

// ReadUntil reads frames until match returns true, or the deadline passes.
func (c *Client) ReadUntil(d time.Duration, match func(http2.Frame) bool) (http2.Frame, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	defer c.Conn.SetReadDeadline(time.Time{})
	for {
		f, err := c.Framer.ReadFrame()
		if err != nil {
			return nil, err
		}
		if match(f) {
			return f, nil
		}
	}
}

// FullDuplex is grpc.testing.TestService's bidi method, the long-lived
// stream the demo app, the tests and the benchmarks hold open.
const FullDuplex = "/grpc.testing.TestService/FullDuplexCall"

// DialStreams dials addr and opens n FullDuplex streams (ids 1, 3, ...),
// each asking for one 8-byte answer, with extra request headers as
// name/value pairs; it returns once the app has answered on every stream,
// so that every handler runs.
func DialStreams(addr string, n int, headers ...string) (*Client, error) {
	c, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}}})
	if err != nil {
		c.Close()
		return nil, err
	}
	for i := range n {
		id := uint32(2*i + 1)
		if err := c.OpenStream(id, GRPCRequest(FullDuplex, headers...)); err != nil {
			c.Close()
			return nil, fmt.Errorf("open stream %d: %w", id, err)
		}
		if err := c.SendMessage(id, msg, false); err != nil {
			c.Close()
			return nil, fmt.Errorf("send on stream %d: %w", id, err)
		}
	}
	answered := 0
	if _, err := c.ReadUntil(30*time.Second, func(f http2.Frame) bool {
		if f.Header().Type == http2.FrameData {
			answered++
		}
		return answered == n
	}); err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for the app's answers (%d of %d): %w", answered, n, err)
	}
	return c, nil
}
