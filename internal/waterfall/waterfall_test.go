package waterfall

import (
	"bytes"
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
	wantH := (len(tr.Spans)+headerRows)*rowHeight + 2*margin
	if b := img.Bounds(); b.Dx() != Width || b.Dy() != wantH {
		t.Fatalf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), Width, wantH)
	}
	var bar, errBar, ticks int
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := labelWidth; x < Width; x++ {
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
	if bar == 0 || errBar == 0 || ticks == 0 {
		t.Errorf("pixels: %d bar, %d error bar, %d tick; want some of each", bar, errBar, ticks)
	}

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatalf("encode PNG: %v", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(buf.Bytes()))
	if err != nil || cfg.Width != Width || cfg.Height != wantH {
		t.Errorf("PNG config %+v, %v; want %dx%d", cfg, err, Width, wantH)
	}
	if out := os.Getenv("WATERFALL_OUT"); out != "" {
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
