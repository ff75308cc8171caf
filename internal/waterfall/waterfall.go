// Package waterfall renders one Jaeger trace as a PNG waterfall: a row per
// span in parent-then-children order, the span as a bar on a shared time
// axis with its events as diamonds on the bar, each event's name and fields
// on a line of its own under the bar, and a label column with the span
// name, duration, service and the attributes that matter for a disconnect.
//
// It draws with gonum/plot, the library of the bench charts
// (bench/harness): plot's image canvas (vg/vgimg) and its embedded
// Liberation fonts (plot/font), so it renders the same everywhere. It uses
// that drawing layer and not plot.Plot: a waterfall is a column of wrapped
// text beside rows of varying height, each with a bar and event text
// placed to fit, and plot.Plot lays out data on axes in a fixed frame with
// no room for either. The layout is computed here in pixels (72 dpi, so a
// point is a pixel) and the time axis uses niceStep's round steps of µs.
package waterfall

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/font/liberation"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/hangup-dev/hangup/internal/jaegertest"
)

// Layout, in pixels.
const (
	Width         = 1200 // whole image
	labelWidth    = 430  // left column
	margin        = 14
	lineHeight    = 19 // one line of text
	barHeight     = 12
	rowPad        = 6 // between rows
	indentWidth   = 14
	fontSize      = 13 // points at 72 dpi, so pixels
	maxDetails    = 6  // detail lines under a span's name
	maxEvents     = 8  // events listed under a bar; more are summarised
	maxEventLines = 3  // lines of one event's text
	plotLeft      = labelWidth + margin
	plotRight     = Width - margin
	headerLines   = 3 // title, legend, time axis
)

var (
	background = color.RGBA{0xff, 0xff, 0xff, 0xff}
	stripe     = color.RGBA{0xf4, 0xf6, 0xf8, 0xff} // every other row
	textColor  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	dimColor   = color.RGBA{0x5f, 0x66, 0x6d, 0xff} // detail lines
	gridColor  = color.RGBA{0xdd, 0xdf, 0xe3, 0xff}
	errorColor = color.RGBA{0xd6, 0x45, 0x45, 0xff}
	tickColor  = color.RGBA{0x00, 0x00, 0x00, 0xff} // event diamonds and their leaders
	// serviceColors colour bars by service, in order of first appearance.
	serviceColors = []color.RGBA{
		{0x4c, 0x78, 0xa8, 0xff}, {0x59, 0xa1, 0x4f, 0xff}, {0xb0, 0x7a, 0xa1, 0xff},
		{0xf2, 0x8e, 0x2b, 0xff}, {0x76, 0xb7, 0xb2, 0xff}, {0x9c, 0x75, 0x5f, 0xff},
	}
)

// detailTags are the span tags shown under a span's name, in this order:
// what a reader of a disconnect trace looks for first.
var detailTags = []string{
	"hangup.disconnect.reason", "hangup.disconnect.initiator", "rpc.grpc.status_code",
	"http2.stream_id", "hangup.connection.id", "hangup.notify.attempts",
	"hangup.notify.latency_ms", "hangup.event.id",
}

// fonts holds gonum/plot's embedded Liberation fonts, the ones its charts
// use; a Face only reads it, so Renders may run concurrently.
var fonts = font.NewCache(liberation.Collection())

// faces are the two fonts of a picture.
type faces struct{ regular, bold font.Face }

func newFaces() (faces, error) {
	sans := font.Font{Typeface: "Liberation", Variant: "Sans"}
	bold := sans
	bold.Weight = xfont.WeightBold
	if !fonts.Has(sans) || !fonts.Has(bold) {
		return faces{}, errors.New("waterfall: gonum/plot lacks its Liberation Sans fonts")
	}
	return faces{regular: fonts.Lookup(sans, fontSize), bold: fonts.Lookup(bold, fontSize)}, nil
}

// laidOut is one span's row: what it shows and how tall it is.
type laidOut struct {
	row
	title   string   // indented name, cut to fit before the duration
	details []string // grey lines under the title
	events  []event
	top, h  int // y of the row and its height
	color   color.RGBA
}

// event is one span event: its time and its line of text.
type event struct {
	x     int      // of the diamond
	tx    int      // where its text starts
	lines []string // its text, wrapped to the plot's width
	line  int      // index of its first line under the bar, from 1
}

// Render draws tr. It fails on a trace without spans.
func Render(tr jaegertest.Trace) (*image.RGBA, error) {
	if len(tr.Spans) == 0 {
		return nil, errors.New("waterfall: trace has no spans")
	}
	ff, err := newFaces()
	if err != nil {
		return nil, err
	}
	start, end := tr.Spans[0].StartTime, tr.Spans[0].StartTime+tr.Spans[0].Duration
	for _, s := range tr.Spans {
		start = min(start, s.StartTime)
		end = max(end, s.StartTime+s.Duration)
		for _, l := range s.Logs {
			start, end = min(start, l.Timestamp), max(end, l.Timestamp)
		}
	}
	total := max(end-start, 1) // µs
	x := func(us int64) int {
		return plotLeft + int(float64(us-start)/float64(total)*float64(plotRight-plotLeft))
	}

	rows, legend := layout(tr, ff, x)
	y := margin + headerLines*lineHeight + rowPad
	for i := range rows {
		rows[i].top = y
		y += rows[i].h
	}
	height := y + margin
	pic := newPicture(Width, height)
	for i, r := range rows {
		if i%2 == 1 {
			pic.fill(image.Rect(0, r.top, Width, r.top+r.h), stripe)
		}
	}

	// Header: title, legend, time axis with gridlines at round offsets.
	pic.text(ff.bold, margin, margin+13, textColor, fmt.Sprintf("trace %s", tr.TraceID))
	pic.text(ff.regular, margin+measure(ff.bold, "trace "+tr.TraceID)+12, margin+13, dimColor,
		fmt.Sprintf("%d spans, %s", len(tr.Spans), micros(total)))
	drawLegend(pic, ff, margin, margin+lineHeight+13, legend)
	axisY := margin + 2*lineHeight + 13
	pic.text(ff.regular, margin, axisY, dimColor, "span, duration, service and attributes")
	step := niceStep(total, 8)
	for off := int64(0); off <= total; off += step {
		gx := x(start + off)
		pic.fill(image.Rect(gx, axisY+4, gx+1, height-margin), gridColor)
		label := micros(off)
		pic.text(ff.regular, min(gx-measure(ff.regular, label)/2, plotRight-measure(ff.regular, label)), axisY, dimColor, label)
	}

	for _, r := range rows {
		drawRow(pic, ff, r, x)
	}
	return pic.image()
}

// drawRow draws one span: the label column, the bar, its events.
func drawRow(pic *picture, ff faces, r laidOut, x func(int64) int) {
	s := r.span
	base := r.top + 14 // baseline of the first line
	indent := margin + r.depth*indentWidth
	pic.text(ff.bold, indent, base, textColor, r.title)
	dur := micros(s.Duration)
	pic.text(ff.regular, labelWidth-measure(ff.regular, dur), base, textColor, dur)
	for i, d := range r.details {
		pic.text(ff.regular, indent+indentWidth/2, base+(i+1)*lineHeight, dimColor, d)
	}

	barTop := r.top + (lineHeight-barHeight)/2 + 1
	x0, x1 := x(s.StartTime), x(s.StartTime+s.Duration)
	pic.fill(image.Rect(x0, barTop, max(x1, x0+2), barTop+barHeight), r.color)

	for _, ev := range r.events {
		ly := base + ev.line*lineHeight // baseline of the event's first line
		// A leader from the bar down to the event's text ties the two.
		pic.fill(image.Rect(ev.x, barTop+barHeight/2, ev.x+1, ly-9), tickColor)
		pic.diamond(ev.x, barTop+barHeight/2, 6, tickColor)
		for i, l := range ev.lines {
			pic.text(ff.regular, ev.tx, ly+i*lineHeight, textColor, l)
		}
	}
}

// layout decides each row's text and height, and returns the services in
// order of first appearance for the legend.
func layout(tr jaegertest.Trace, ff faces, x func(int64) int) ([]laidOut, []string) {
	ids := map[string]bool{}
	for _, s := range tr.Spans {
		ids[s.SpanID] = true
	}
	colors := map[string]color.RGBA{}
	var services []string
	var out []laidOut
	for _, r := range order(tr.Spans) {
		s := r.span
		service := tr.Processes[s.ProcessID].ServiceName
		c, ok := colors[service]
		if !ok {
			c = serviceColors[len(colors)%len(serviceColors)]
			colors[service] = c
			services = append(services, service)
		}
		lo := laidOut{row: r, color: c}
		if v, _ := s.Tag("otel.status_code"); v == "ERROR" {
			lo.color = errorColor
		}
		indent := r.depth * indentWidth
		room := labelWidth - margin - indent - measure(ff.regular, micros(s.Duration)) - 12
		lo.title = fit(ff.bold, s.OperationName, room)
		lo.details = wrap(ff.regular, details(s, service, ids), labelWidth-margin-indent-indentWidth/2, maxDetails)

		logs := append([]jaegertest.Log(nil), s.Logs...)
		sort.SliceStable(logs, func(i, j int) bool { return logs[i].Timestamp < logs[j].Timestamp })
		evLines := 0
		for i, l := range logs {
			items := eventItems(l)
			if i == maxEvents-1 && len(logs) > maxEvents {
				items = []string{fmt.Sprintf("... and %d more events", len(logs)-i)}
			}
			ev := placeEvent(ff.regular, x(l.Timestamp), items)
			ev.line = evLines + 1
			evLines += len(ev.lines)
			lo.events = append(lo.events, ev)
			if i == maxEvents-1 {
				break
			}
		}
		lines := 1 + max(len(lo.details), evLines)
		lo.h = lines*lineHeight + rowPad
		out = append(out, lo)
	}
	return out, services
}

// details lists a span's label items: service and kind, status, the
// attributes of detailTags it has, and its parent or links when those are
// outside the trace.
func details(s *jaegertest.Span, service string, ids map[string]bool) []string {
	first := service
	if k, ok := s.Tag("span.kind"); ok {
		first += ", " + fmt.Sprint(k)
	}
	if v, _ := s.Tag("otel.status_code"); v != nil && v != "" {
		first += ", status " + fmt.Sprint(v)
	}
	items := []string{first}
	for _, k := range detailTags {
		if v, ok := s.Tag(k); ok {
			items = append(items, k+"="+value(v))
		}
	}
	if a, ok := s.Tag("network.peer.address"); ok {
		peer := value(a)
		if p, ok := s.Tag("network.peer.port"); ok {
			peer += ":" + value(p)
		}
		items = append(items, "peer "+peer)
	}
	for _, ref := range s.References {
		switch {
		case ref.RefType == "CHILD_OF" && ref.TraceID == s.TraceID && !ids[ref.SpanID]:
			items = append(items, "parent "+ref.SpanID+" (not in Jaeger)")
		case ref.RefType == "FOLLOWS_FROM":
			items = append(items, "link to span "+ref.SpanID+" of trace "+short(ref.TraceID))
		}
	}
	return items
}

// eventItems are an event's name followed by its fields.
func eventItems(l jaegertest.Log) []string {
	parts := []string{l.Name()}
	for _, f := range l.Fields {
		if f.Key == "event" {
			continue
		}
		parts = append(parts, f.Key+"="+value(f.Value))
	}
	return parts
}

// placeEvent puts an event's text right of its leader at x, else left of
// it, else wrapped over the plot's width as close to x as it fits.
func placeEvent(face font.Face, x int, items []string) event {
	const gap = 6
	one := strings.Join(items, "  ")
	w := measure(face, one)
	switch {
	case x+gap+w <= plotRight:
		return event{x: x, tx: x + gap, lines: []string{one}}
	case x-gap-w >= plotLeft:
		return event{x: x, tx: x - gap - w, lines: []string{one}}
	}
	lines := wrap(face, items, plotRight-plotLeft, maxEventLines)
	widest := 0
	for _, l := range lines {
		widest = max(widest, measure(face, l))
	}
	tx := x + gap
	if tx+widest > plotRight {
		tx = max(plotLeft, plotRight-widest)
	}
	return event{x: x, tx: tx, lines: lines}
}

// value formats a tag value: JSON numbers that are whole without a
// fraction, others with at most three decimals.
func value(v any) string {
	f, ok := v.(float64)
	if !ok {
		return fmt.Sprint(v)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8] + "..."
	}
	return id
}

// wrap packs items, separated by two spaces, into at most n lines of at
// most width pixels; an item too long for a line is cut, and when items do
// not fit in n lines the last line ends in "..." instead.
func wrap(face font.Face, items []string, width, n int) []string {
	const sep, more = "  ", "..."
	join := func(l []string, extra string) string { return strings.Join(append(slices.Clip(l), extra), sep) }
	var lines [][]string // items per line
	for _, it := range items {
		if k := len(lines); k > 0 && measure(face, join(lines[k-1], it)) <= width {
			lines[k-1] = append(lines[k-1], it)
			continue
		}
		lines = append(lines, []string{fit(face, it, width)})
	}
	out := make([]string, 0, min(len(lines), n))
	for i, l := range lines {
		if i == n-1 && len(lines) > n {
			// Drop items from the end until the marker fits after them.
			for len(l) > 0 && measure(face, join(l, more)) > width {
				l = l[:len(l)-1]
			}
			out = append(out, join(l, more))
			break
		}
		out = append(out, strings.Join(l, sep))
	}
	return out
}

// fit cuts s to width pixels, ending it with "..." when cut.
func fit(face font.Face, s string, width int) string {
	if measure(face, s) <= width {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && measure(face, string(r)+"...") > width {
		r = r[:len(r)-1]
	}
	return string(r) + "..."
}

// niceStep returns a round step (1, 2 or 5 times a power of ten µs) that
// cuts total into at most n intervals.
func niceStep(total int64, n int) int64 {
	raw := float64(total) / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(max(raw, 1))))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return max(int64(m*p), 1)
		}
	}
	return max(int64(10*p), 1)
}

func drawLegend(pic *picture, ff faces, x, y int, services []string) {
	item := func(c color.RGBA, label string, marker bool) {
		if marker {
			pic.diamond(x+5, y-4, 6, c)
		} else {
			pic.fill(image.Rect(x, y-10, x+12, y), c)
		}
		pic.text(ff.regular, x+17, y, dimColor, label)
		x += 17 + measure(ff.regular, label) + 18
	}
	for i, s := range services {
		item(serviceColors[i%len(serviceColors)], "service "+s, false)
	}
	item(errorColor, "status ERROR (ended by a disconnect)", false)
	item(tickColor, "span event", true)
}

// micros formats a duration given in µs.
func micros(us int64) string {
	switch {
	case us == 0:
		return "0"
	case us >= 1_000_000:
		return trim(fmt.Sprintf("%.3f", float64(us)/1e6)) + "s"
	case us >= 1000:
		return trim(fmt.Sprintf("%.2f", float64(us)/1e3)) + "ms"
	}
	return fmt.Sprintf("%dµs", us)
}

// trim drops trailing zeros of a fraction: 2.50 → 2.5, 3.00 → 3.
func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// picture is a gonum/plot image canvas addressed like an image: in pixels
// from the top left (vg's origin is the bottom left). At 72 dpi a vg point
// is a pixel.
type picture struct {
	c *vgimg.Canvas
	h int // height in pixels
}

func newPicture(w, h int) *picture {
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(w), vg.Length(h)), vgimg.UseDPI(72), vgimg.UseBackgroundColor(background))
	return &picture{c: c, h: h}
}

// pt is pixel (x, y) in vg's coordinates.
func (p *picture) pt(x, y int) vg.Point {
	return vg.Point{X: vg.Length(x), Y: vg.Length(p.h - y)}
}

// polygon fills the polygon through the pixels xy (x0, y0, x1, y1, ...).
func (p *picture) polygon(c color.Color, xy ...int) {
	var path vg.Path
	path.Move(p.pt(xy[0], xy[1]))
	for i := 2; i+1 < len(xy); i += 2 {
		path.Line(p.pt(xy[i], xy[i+1]))
	}
	path.Close()
	p.c.SetColor(c)
	p.c.Fill(path)
}

func (p *picture) fill(r image.Rectangle, c color.Color) {
	if r.Empty() {
		return
	}
	p.polygon(c, r.Min.X, r.Min.Y, r.Max.X, r.Min.Y, r.Max.X, r.Max.Y, r.Min.X, r.Max.Y)
}

// diamond draws a filled diamond of height h centred on (cx, cy).
func (p *picture) diamond(cx, cy, h int, c color.Color) {
	p.polygon(c, cx, cy-h, cx+h, cy, cx, cy+h, cx-h, cy)
}

// text draws s with its baseline at y.
func (p *picture) text(face font.Face, x, y int, c color.Color, s string) {
	p.c.SetColor(c)
	p.c.FillString(face, p.pt(x, y), s)
}

// image is the finished picture.
func (p *picture) image() (*image.RGBA, error) {
	img, ok := p.c.Image().(*image.RGBA)
	if !ok {
		return nil, fmt.Errorf("waterfall: canvas is a %T, want *image.RGBA", p.c.Image())
	}
	return img, nil
}

func measure(face font.Face, s string) int {
	return int(math.Ceil(face.Width(s).Points()))
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
