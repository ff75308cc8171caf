package waterfall

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangup-dev/hangup/internal/jaegertest"
)

func loadFixture(t *testing.T) jaegertest.Trace {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "trace.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := Decode(f, "4bf92f3577b34da6a3ce929d0e0e4736")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRenderFixture(t *testing.T) {
	tr := loadFixture(t)
	img, err := Render(tr)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	// Header, then per span its name line plus its detail or event lines.
	minH := margin + headerLines*lineHeight + len(tr.Spans)*(lineHeight+rowPad)
	if b := img.Bounds(); b.Dx() != Width || b.Dy() < minH {
		t.Fatalf("image is %dx%d, want %d wide and at least %d high", b.Dx(), b.Dy(), Width, minH)
	}
	var bar, errBar, ticks int
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := plotLeft; x < Width; x++ {
			switch img.RGBAAt(x, y) {
			case serviceColors[0], serviceColors[1]:
				bar++
			case errorColor:
				errBar++
			case tickColor:
				ticks++
			}
		}
	}
	// Text is antialiased textColor, never pure tickColor black: ticks
	// counts only diamonds and leaders.
	if bar == 0 || errBar == 0 || ticks == 0 {
		t.Errorf("pixels: %d bar, %d error bar, %d tick; want some of each", bar, errBar, ticks)
	}

	// WATERFALL_OUT=/tmp/trace.png saves the picture to look at.
	if out := os.Getenv("WATERFALL_OUT"); out != "" {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatalf("encode PNG: %v", err)
		}
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrder(t *testing.T) {
	tr := loadFixture(t)
	var got []string
	for _, r := range order(tr.Spans) {
		got = append(got, strings.Repeat(">", r.depth)+r.span.OperationName)
	}
	want := "echo.v1.Echo/Stream,>echo.v1.Echo/Stream handler,>hangup.notify"
	if strings.Join(got, ",") != want {
		t.Errorf("order = %v, want %s", got, want)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, json, traceID string
	}{
		{name: "not JSON", json: "<html>"},
		{name: "no traces", json: `{"data": []}`},
		{name: "unknown trace id", json: `{"data": [{"traceID": "aa", "spans": []}]}`, traceID: "bb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(strings.NewReader(tc.json), tc.traceID); err == nil {
				t.Error("Decode succeeded, want an error")
			}
		})
	}
	if _, err := Render(jaegertest.Trace{}); err == nil {
		t.Error("Render of an empty trace succeeded, want an error")
	}
}

func TestPlaceEvent(t *testing.T) {
	ff, err := newFaces()
	if err != nil {
		t.Fatal(err)
	}
	long := []string{"http2.goaway", "hangup.initiator=CLIENT", "http2.debug_data=client shutting down",
		"http2.error_code=0", "http2.error_name=NO_ERROR", "http2.last_stream_id=0"}
	tests := []struct {
		name      string
		x         int
		items     []string
		wantLines int
		wantSide  string // "right" of the leader, "left" of it, or "any"
	}{
		{name: "fits right", x: plotLeft + 10, items: []string{"http2.rst_stream", "http2.error_name=CANCEL"}, wantLines: 1, wantSide: "right"},
		{name: "fits left only", x: plotRight - 5, items: []string{"hangup.notified", "hangup.notify.attempts=1"}, wantLines: 1, wantSide: "left"},
		{name: "wrapped", x: (plotLeft + plotRight) / 2, items: long, wantLines: 2, wantSide: "any"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := placeEvent(ff.regular, tc.x, tc.items)
			if len(ev.lines) != tc.wantLines {
				t.Fatalf("lines %q, want %d", ev.lines, tc.wantLines)
			}
			all := strings.Join(ev.lines, "  ")
			if all != strings.Join(tc.items, "  ") {
				t.Errorf("text %q lost or changed items of %q", all, tc.items)
			}
			for _, l := range ev.lines {
				if w := measure(ff.regular, l); ev.tx < plotLeft || ev.tx+w > plotRight {
					t.Errorf("line %q spans x %d..%d, outside the plot %d..%d", l, ev.tx, ev.tx+w, plotLeft, plotRight)
				}
			}
			switch tc.wantSide {
			case "right":
				if ev.tx <= tc.x {
					t.Errorf("text starts at %d, want right of the leader at %d", ev.tx, tc.x)
				}
			case "left":
				if ev.tx+measure(ff.regular, ev.lines[0]) >= tc.x {
					t.Errorf("text ends right of the leader at %d", tc.x)
				}
			}
		})
	}
}

func TestWrapAndFit(t *testing.T) {
	ff, err := newFaces()
	if err != nil {
		t.Fatal(err)
	}
	items := []string{"aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff"}
	w2 := measure(ff.regular, "aaaa  bbbb") // room for two items a line
	tests := []struct {
		name  string
		items []string
		n     int
		want  []string
	}{
		{name: "all fit", items: items, n: 3, want: []string{"aaaa  bbbb", "cccc  dddd", "eeee  ffff"}},
		{name: "cut with ellipsis", items: items, n: 2, want: []string{"aaaa  bbbb", "cccc  ..."}},
		{name: "one line", items: items[:1], n: 1, want: []string{"aaaa"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := wrap(ff.regular, tc.items, w2, tc.n)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("wrap = %q, want %q", got, tc.want)
			}
			for _, l := range got {
				if measure(ff.regular, l) > w2 {
					t.Errorf("line %q wider than %d px", l, w2)
				}
			}
		})
	}
	if got := fit(ff.regular, "grpc.testing.TestService/FullDuplexCall", 100); !strings.HasSuffix(got, "...") || measure(ff.regular, got) > 100 {
		t.Errorf("fit = %q (%d px), want a cut ending in ... within 100 px", got, measure(ff.regular, got))
	}
}

func TestAxisAndDurations(t *testing.T) {
	steps := []struct {
		total int64
		want  int64
	}{
		{total: 3990, want: 500},
		{total: 26000, want: 5000},
		{total: 7, want: 1},
		{total: 2_000_000, want: 250_000 * 2},
	}
	for _, tc := range steps {
		t.Run(fmt.Sprintf("step %d", tc.total), func(t *testing.T) {
			if got := niceStep(tc.total, 8); got != tc.want {
				t.Errorf("niceStep(%d, 8) = %d, want %d", tc.total, got, tc.want)
			}
		})
	}
	durations := []struct {
		us   int64
		want string
	}{
		{0, "0"}, {538, "538µs"}, {3388, "3.39ms"}, {2500, "2.5ms"}, {20000, "20ms"}, {1_500_000, "1.5s"},
	}
	for _, tc := range durations {
		t.Run(tc.want, func(t *testing.T) {
			if got := micros(tc.us); got != tc.want {
				t.Errorf("micros(%d) = %q, want %q", tc.us, got, tc.want)
			}
		})
	}
}
