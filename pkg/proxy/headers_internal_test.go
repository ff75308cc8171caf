package proxy

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestHeaderMemoMatchesFullDecoding drives a decoder and an encoder with
// their memos through long random sequences of header blocks — repeated
// blocks, blocks that add to the dynamic table, table size updates, changes
// of the app's table limit, trailers, trace context — and checks every
// block against x/net's plain hpack: the relay's decoder must give the
// fields a fresh decoder gives, and the app must decode exactly the
// client's fields plus the relay's.
func TestHeaderMemoMatchesFullDecoding(t *testing.T) {
	tests := []struct {
		name string
		seed uint64
		// chances, in percent, per block
		newValue, sizeUpdate, appLimit, trailers, traced int
	}{
		{name: "mostly repeated blocks", seed: 1, newValue: 2, sizeUpdate: 1, appLimit: 1, trailers: 5},
		{name: "many table changes", seed: 2, newValue: 30, sizeUpdate: 10, appLimit: 10, trailers: 20},
		{name: "tracing on", seed: 3, newValue: 5, sizeUpdate: 2, appLimit: 2, trailers: 10, traced: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(tt.seed, 0))
			chance := func(pct int) bool { return rnd.IntN(100) < pct }

			var cliBuf bytes.Buffer
			cli := hpack.NewEncoder(&cliBuf) // the client's encoder
			ref := hpack.NewDecoder(defaultHeaderTableSize, nil)
			dec := newHeaderDecoder(DefaultMaxHeaderListSize)
			enc := newRequestEncoder()
			app := hpack.NewDecoder(defaultHeaderTableSize, nil)

			values := []string{"a", "b", "c"}
			var hits, reused int
			for i := range 3000 {
				if chance(tt.sizeUpdate) {
					// The app tells the client a new table size; the
					// client's encoder signals it in its next block.
					v := uint32(rnd.IntN(2) * 4096)
					if chance(50) {
						v = uint32(64 + rnd.IntN(512))
					}
					dec.setAllowedTableSize(v)
					ref.SetAllowedMaxDynamicTableSize(v)
					cli.SetMaxDynamicTableSizeLimit(v)
					cli.SetMaxDynamicTableSize(v)
				}
				if chance(tt.appLimit) {
					v := uint32(rnd.IntN(3) * 2048)
					enc.setTableLimit(v)
					app.SetAllowedMaxDynamicTableSize(v)
				}
				if chance(tt.newValue) {
					values[rnd.IntN(len(values))] = "v" + strconv.Itoa(i)
				}
				ids := !chance(tt.trailers)
				fields := []hpack.HeaderField{
					{Name: ":method", Value: "POST"},
					{Name: ":path", Value: "/svc/" + values[rnd.IntN(2)], Sensitive: chance(10)},
					{Name: "x-user", Value: values[rnd.IntN(len(values))]},
					{Name: "traceparent", Value: "00-client-" + values[0]},
					{Name: HeaderStreamID, Value: "forged"},
					{Name: HeaderRTT, Value: "1"},
				}
				if chance(20) {
					// A deadline: never added to the relay's table. First
					// in the block, it meets the table size updates.
					f := hpack.HeaderField{Name: "grpc-timeout", Value: strconv.Itoa(i) + "m", Sensitive: chance(10)}
					if chance(50) {
						fields = append([]hpack.HeaderField{f}, fields...)
					} else {
						fields = append(fields, f)
					}
				}
				if !ids {
					fields = []hpack.HeaderField{{Name: "grpc-status", Value: values[rnd.IntN(2)]}}
				}
				cliBuf.Reset()
				for _, f := range fields {
					if err := cli.WriteField(f); err != nil {
						t.Fatal(err)
					}
				}
				block := bytes.Clone(cliBuf.Bytes())

				want, err := ref.DecodeFull(block)
				if err != nil {
					t.Fatalf("block %d: the reference decoder failed: %v", i, err)
				}
				for _, m := range dec.memo {
					if len(m.block) > 0 && bytes.Equal(m.block, block) {
						hits++
						if m.encGen == enc.gen {
							reused++
						}
					}
				}
				got, memo, err := dec.decode(block)
				if err != nil {
					t.Fatalf("block %d: decode: %v", i, err)
				}
				if !equalFields(got, want) {
					t.Fatalf("block %d: decoded %v, want %v", i, got, want)
				}

				var trace traceContext
				if chance(tt.traced) {
					trace = traceContext{parent: "00-sidecar-" + strconv.Itoa(i), state: "k=" + strconv.Itoa(i%2)}
				}
				id := uint32(2*i + 1)
				rttUS := int64(-1) // unknown, or the header is off
				if ids && chance(50) {
					rttUS = int64(rnd.IntN(2_000_000))
				}
				out, err := app.DecodeFull(enc.encode(got, memo, ids, "conn", id, trace, rttUS))
				if err != nil {
					t.Fatalf("block %d: the app cannot decode the relay's block: %v", i, err)
				}
				var wantApp []hpack.HeaderField
				for _, f := range want {
					switch {
					case f.Name == HeaderStreamID || f.Name == HeaderConnectionID || f.Name == HeaderRTT:
					case trace.parent != "" && (f.Name == "traceparent" || f.Name == "tracestate"):
					default:
						wantApp = append(wantApp, f)
					}
				}
				if ids {
					wantApp = append(wantApp, hpack.HeaderField{Name: HeaderConnectionID, Value: "conn"},
						hpack.HeaderField{Name: HeaderStreamID, Value: strconv.Itoa(int(id))})
				}
				if rttUS >= 0 {
					wantApp = append(wantApp, hpack.HeaderField{Name: HeaderRTT, Value: strconv.FormatInt(rttUS, 10)})
				}
				if trace.parent != "" {
					wantApp = append(wantApp, hpack.HeaderField{Name: "traceparent", Value: trace.parent},
						hpack.HeaderField{Name: "tracestate", Value: trace.state})
				}
				if !equalFields(out, wantApp) {
					t.Fatalf("block %d: the app decoded %v, want %v", i, out, wantApp)
				}
			}
			// Otherwise the memo was never exercised and the test proves nothing.
			if hits < 50 || reused < 50 {
				t.Errorf("memo hits %d, encodings reused %d: want at least 50 each", hits, reused)
			}
			t.Logf("memo hits %d, encodings reused %d of 3000 blocks", hits, reused)
		})
	}
}

func TestKeepsTable(t *testing.T) {
	tests := []struct {
		name  string
		block []byte
		want  bool
	}{
		{"empty", nil, true},
		{"indexed", []byte{0x82, 0x86}, true},
		{"indexed, multi-byte index", []byte{0xff, 0x80, 0x01}, true},
		{"literal without indexing, indexed name", []byte{0x04, 0x02, '/', 'a'}, true},
		{"never indexed, new name", []byte{0x10, 0x01, 'x', 0x81, 0xff}, true},
		{"literal with incremental indexing", []byte{0x82, 0x44, 0x02, '/', 'a'}, false},
		{"table size update", []byte{0x20, 0x82}, false},
		{"truncated string", []byte{0x04, 0x05, 'a'}, false},
		{"truncated integer", []byte{0xff, 0x80}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keepsTable(tt.block); got != tt.want {
				t.Errorf("keepsTable(% x) = %v, want %v", tt.block, got, tt.want)
			}
		})
	}
}

// TestHeaderMemoBounds checks which blocks the decoder remembers: only
// those that leave the table as it is, and not too long to keep.
func TestHeaderMemoBounds(t *testing.T) {
	// :path, a literal without indexing longer than memoMaxBlock
	long := appendRawString([]byte{0x04}, "/"+strings.Repeat("a", memoMaxBlock))
	tests := []struct {
		name  string
		block []byte
		want  bool
	}{
		{"indexed fields", []byte{0x82, 0x86, 0x84}, true},
		{"literal without indexing", []byte{0x82, 0x04, 0x02, '/', 'a'}, true},
		{"adds to the table", []byte{0x82, 0x44, 0x02, '/', 'a'}, false},
		{"too many fields", bytes.Repeat([]byte{0x82}, memoMaxFields+1), false},
		{"as many fields as allowed", bytes.Repeat([]byte{0x82}, memoMaxFields), true},
		{"too long", long, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newHeaderDecoder(DefaultMaxHeaderListSize)
			_, memo, err := d.decode(tt.block)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := memo != nil; got != tt.want {
				t.Errorf("remembered = %v, want %v", got, tt.want)
			}
		})
	}
}
