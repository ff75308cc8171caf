package proxy

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestMalformedRequestsAreRefused: a request with a connection-specific
// header field or a TE other than "trailers" (RFC 9113 §8.2.2, h2spec
// http2/8.1.2.2) gets RST_STREAM(PROTOCOL_ERROR) from the relay and never
// reaches the app, nor does its DATA; "te: trailers" goes through. Before,
// the app got the request (x/net's server answered it 400).
func TestMalformedRequestsAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		field   hpack.HeaderField
		refused bool
	}{
		{"connection", hpack.HeaderField{Name: "connection", Value: "keep-alive"}, true},
		{"keep-alive", hpack.HeaderField{Name: "keep-alive", Value: "timeout=5"}, true},
		{"proxy-connection", hpack.HeaderField{Name: "proxy-connection", Value: "close"}, true},
		{"transfer-encoding", hpack.HeaderField{Name: "transfer-encoding", Value: "chunked"}, true},
		{"upgrade", hpack.HeaderField{Name: "upgrade", Value: "h2c"}, true},
		{"te gzip", hpack.HeaderField{Name: "te", Value: "gzip"}, true},
		{"te trailers", hpack.HeaderField{Name: "te", Value: "trailers"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newRefuseHarness(t)
			for _, id := range []uint32{1, 3} { // twice: the second block may come from the memo
				sent := h.appOut().Len()
				if err := h.client(func(fr *http2.Framer, _ func() []byte) {
					_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
						BlockFragment: request(h.cenc, &h.cb, "/a.S/M", tt.field)})
					_ = fr.WriteData(id, true, []byte("body"))
				}); err != nil {
					t.Fatalf("stream %d: %v", id, err)
				}
				got := readFrames(t, h.appOut().Bytes()[sent:])
				if refused := hasRST(readFrames(t, h.cli.out.Bytes()), id, http2.ErrCodeProtocol); refused != tt.refused {
					t.Fatalf("stream %d: refused = %v, want %v", id, refused, tt.refused)
				}
				if tt.refused && len(got) != 0 {
					t.Fatalf("stream %d: the app got %v of a refused request", id, got)
				}
				if !tt.refused && len(got) != 2 {
					t.Fatalf("stream %d: the app got %v, want HEADERS and DATA", id, got)
				}
			}
		})
	}
}

// TestRepeatedSettingsKeepTheLastValue: a client's SETTINGS that names a
// setting twice (h2spec http2/6.5.3/1) reaches the app with each setting
// once, at its last place and value, which is what processing them in
// order leaves; some apps (x/net's server) reject repeats. A SETTINGS
// frame without repeats passes byte for byte.
func TestRepeatedSettingsKeepTheLastValue(t *testing.T) {
	tests := []struct {
		name string
		in   []http2.Setting
		want []http2.Setting
	}{
		{"repeats", []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 100}, {ID: http2.SettingMaxFrameSize, Val: 16384}, {ID: http2.SettingInitialWindowSize, Val: 1}},
			[]http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 16384}, {ID: http2.SettingInitialWindowSize, Val: 1}}},
		{"no repeats", []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 100}, {ID: http2.SettingMaxFrameSize, Val: 16384}},
			[]http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 100}, {ID: http2.SettingMaxFrameSize, Val: 16384}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestConn(t)
			in := frames(t, func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) { _ = fr.WriteSettings(tt.in...) })
			if err := feed(t, tc.up, in); err != nil {
				t.Fatal(err)
			}
			got := readFrames(t, tc.app.out.Bytes())
			sf, ok := got[0].(*http2.SettingsFrame)
			if len(got) != 1 || !ok {
				t.Fatalf("the app got %v, want one SETTINGS", got)
			}
			var settings []http2.Setting
			_ = sf.ForeachSetting(func(s http2.Setting) error { settings = append(settings, s); return nil })
			if len(settings) != len(tt.want) {
				t.Fatalf("the app got settings %v, want %v", settings, tt.want)
			}
			for i := range settings {
				if settings[i] != tt.want[i] {
					t.Fatalf("the app got settings %v, want %v", settings, tt.want)
				}
			}
		})
	}
}
