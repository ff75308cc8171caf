// Package waterfall renders one Jaeger trace as a PNG waterfall: a row per
// span in parent-then-children order, the span as a bar on a shared time
// axis, its events as ticks on the bar with their names after it, and a
// label column with the span name, service and duration.
//
// It draws with image/draw and the fixed 7x13 font of
// golang.org/x/image/font/basicfont, so it needs no plotting library.
package waterfall

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"io"
	"sort"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/hangup-dev/hangup/internal/jaegertest"
)

// Layout, in pixels.
const (
	Width      = 1400 // whole image
	labelWidth = 420  // left column
	rowHeight  = 22
	headerRows = 2 // title and time axis
	margin     = 10
	barHeight  = 12
	maxLabel   = labelWidth/7 - 2 // characters of the 7 px font
)

var (
	background = color.RGBA{0xff, 0xff, 0xff, 0xff}
	textColor  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	gridColor  = color.RGBA{0xe0, 0xe0, 0xe0, 0xff}
	errorColor = color.RGBA{0xd6, 0x45, 0x45, 0xff}
	tickColor  = color.RGBA{0x00, 0x00, 0x00, 0xff}
	// serviceColors colour bars by service, in order of first appearance.
	serviceColors = []color.RGBA{
		{0x4c, 0x78, 0xa8, 0xff}, {0x59, 0xa1, 0x4f, 0xff}, {0xb0, 0x7a, 0xa1, 0xff},
		{0xf2, 0x8e, 0x2b, 0xff}, {0x76, 0xb7, 0xb2, 0xff}, {0x9c, 0x75, 0x5f, 0xff},
	}
)

// Render draws tr. It fails on a trace without spans.
func Render(tr jaegertest.Trace) (*image.RGBA, error) {
	if len(tr.Spans) == 0 {
		return nil, errors.New("waterfall: trace has no spans")
	}
	rows := order(tr.Spans)
	start, end := tr.Spans[0].StartTime, tr.Spans[0].StartTime+tr.Spans[0].Duration
	for _, s := range tr.Spans {
		start = min(start, s.StartTime)
		end = max(end, s.StartTime+s.Duration)
		for _, l := range s.Logs {
			start, end = min(start, l.Timestamp), max(end, l.Timestamp)
		}
	}
	span := max(end-start, 1) // µs

	height := (len(rows)+headerRows)*rowHeight + 2*margin
	img := image.NewRGBA(image.Rect(0, 0, Width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(background), image.Point{}, draw.Src)

	plotLeft, plotRight := labelWidth, Width-margin-160 // room for event names after a bar
	x := func(us int64) int {
		return plotLeft + int(float64(us-start)/float64(span)*float64(plotRight-plotLeft))
	}

	text(img, margin, margin+13, fmt.Sprintf("trace %s  %d spans  %s", tr.TraceID, len(tr.Spans), micros(span)))
	// Time axis: five gridlines with their offsets.
	axisY := margin + rowHeight + 13
	for i := 0; i <= 4; i++ {
		us := start + span*int64(i)/4
		gx := x(us)
		fill(img, image.Rect(gx, margin+rowHeight+16, gx+1, height-margin), gridColor)
		text(img, min(gx, plotRight-40), axisY, micros(us-start))
	}

	colors := map[string]color.RGBA{}
	for i, r := range rows {
		s := r.span
		y := margin + (headerRows+i)*rowHeight
		service := tr.Processes[s.ProcessID].ServiceName
		c, ok := colors[service]
		if !ok {
			c = serviceColors[len(colors)%len(serviceColors)]
			colors[service] = c
		}
		if v, _ := s.Tag("otel.status_code"); v == "ERROR" {
			c = errorColor
		}
		label := strings.Repeat("  ", r.depth) + s.OperationName + " (" + service + ") " + micros(s.Duration)
		if len(label) > maxLabel {
			label = label[:maxLabel-1] + "~"
		}
		text(img, margin, y+15, label)

		x0, x1 := x(s.StartTime), x(s.StartTime+s.Duration)
		fill(img, image.Rect(x0, y+5, max(x1, x0+2), y+5+barHeight), c)
		var names []string
		for _, l := range s.Logs {
			tx := x(l.Timestamp)
			fill(img, image.Rect(tx, y+1, tx+2, y+rowHeight-1), tickColor)
			names = append(names, l.Name())
		}
		if len(names) > 0 {
			text(img, max(x1, x0+2)+4, y+15, strings.Join(names, ", "))
		}
	}
	return img, nil
}

// row is a span with its depth in the tree.
type row struct {
	span  *jaegertest.Span
	depth int
}

// order lists spans depth first, children by start time; spans whose parent
// is not in the trace are roots.
func order(spans []jaegertest.Span) []row {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	children := map[string][]*jaegertest.Span{}
	var roots []*jaegertest.Span
	for i := range spans {
		s := &spans[i]
		if p := s.ParentSpanID(); p != "" && ids[p] && p != s.SpanID {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(ss []*jaegertest.Span) {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].StartTime < ss[j].StartTime })
	}
	var out []row
	seen := map[string]bool{}
	var walk func(s *jaegertest.Span, depth int)
	walk = func(s *jaegertest.Span, depth int) {
		if seen[s.SpanID] { // a cycle in bad input
			return
		}
		seen[s.SpanID] = true
		out = append(out, row{s, depth})
		kids := children[s.SpanID]
		byStart(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	byStart(roots)
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}

// micros formats a duration given in µs.
func micros(us int64) string {
	switch {
	case us >= 1_000_000:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	case us >= 1000:
		return fmt.Sprintf("%.1fms", float64(us)/1e3)
	}
	return fmt.Sprintf("%dus", us) // basicfont has ASCII only
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r.Intersect(img.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{
		Dst:  img,
		Src:  image.NewUniform(textColor),
		Face: basicfont.Face7x13,
		Dot:  fixed.P(x, y),
	}
	d.DrawString(s)
}

// Decode reads a Jaeger /api/traces or /api/traces/{id} answer and returns
// the trace with id traceID, or the first trace when traceID is "".
func Decode(r io.Reader, traceID string) (jaegertest.Trace, error) {
	var resp jaegertest.Response
	if err := json.NewDecoder(r).Decode(&resp); err != nil {
		return jaegertest.Trace{}, fmt.Errorf("waterfall: decode Jaeger API JSON: %w", err)
	}
	for _, t := range resp.Data {
		if traceID == "" || t.TraceID == traceID {
			return t, nil
		}
	}
	if traceID == "" {
		return jaegertest.Trace{}, errors.New("waterfall: the JSON holds no trace (want {\"data\": [trace, ...]})")
	}
	return jaegertest.Trace{}, fmt.Errorf("waterfall: trace %s not in the JSON (it holds %d traces)", traceID, len(resp.Data))
}
