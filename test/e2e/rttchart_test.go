package e2e

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
)

var rttChart = flag.String("rtt-chart", "", "write the chart of TestRTTSeriesBeforeDeath to this PNG file (the README's docs/rtt-before-death.png)")

// rttSample is one "rtt sample" line of the sidecar's debug log.
type rttSample struct {
	at                 time.Time
	conn               string
	rtt, smoothed, min time.Duration
}

// rttSamples parses the sidecar's JSON log for the samples of conn ("" for
// any connection).
func rttSamples(t *testing.T, log, conn string) []rttSample {
	t.Helper()
	var out []rttSample
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var l struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Conn     string    `json:"conn"`
			RTT      int64     `json:"rtt"`
			Smoothed int64     `json:"smoothed"`
			Min      int64     `json:"min"`
		}
		if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "rtt sample" {
			continue
		}
		if conn == "" || l.Conn == conn {
			out = append(out, rttSample{at: l.Time, conn: l.Conn, rtt: time.Duration(l.RTT), smoothed: time.Duration(l.Smoothed), min: time.Duration(l.Min)})
		}
	}
	return out
}

// TestRTTSeriesBeforeDeath: a grpc-go client with a stream open reaches the
// built sidecar through a relay whose delay steps up, 10, 40, 120 and
// 250 ms each way, three samples at each (--rtt-interval 1s), until the
// relay delivers nothing more. The event the app gets says
// KEEPALIVE_TIMEOUT and carries the RTT the sidecar saw last: the last
// sample in its log, far above the minimum, which is the first step's
// round trip (TestRTTThroughADelayedPath holds the accuracy to 10%). With -rtt-chart FILE it draws the series (the README's
// picture).
func TestRTTSeriesBeforeDeath(t *testing.T) {
	_, appAddr := startApp(t)
	recv, recvAddr := startReceiver(t, "127.0.0.1:0")
	sc := testtools.StartSidecar(t, appAddr, "--notify-addr", recvAddr, "--rtt-interval", "1s",
		"--keepalive-time", "2s", "--keepalive-timeout", "1s", "--log-level", "debug", "--log-format", "json")
	steps := []time.Duration{10 * time.Millisecond, 40 * time.Millisecond, 120 * time.Millisecond, 250 * time.Millisecond}
	const perStep = 3

	dl := testtools.NewDelayLine(listen(t, "127.0.0.1:0"), sc.Addr, steps[0])
	t.Cleanup(func() { _ = dl.Close() })
	ctx := ctxT(t, 2*time.Minute)
	answeredStream(t, ctx, grpcClient(t, dl.Addr()))
	// The stream's answer came after the ACK of the PING behind the
	// preface: its sample names the connection (the only one).
	var conn string
	waitFor(t, 10*time.Second, "the first RTT sample", func() bool {
		s := rttSamples(t, sc.Process.Output(), "")
		if len(s) > 0 {
			conn = s[0].conn
		}
		return conn != ""
	})

	// Each step lasts until the sidecar has logged perStep samples in it.
	var changes []time.Time
	for i, d := range steps {
		dl.SetDelay(d)
		changes = append(changes, time.Now())
		want := (i + 1) * perStep
		waitFor(t, 30*time.Second, fmt.Sprintf("%d RTT samples of %s", want, conn), func() bool {
			return len(rttSamples(t, sc.Process.Output(), conn)) >= want
		})
	}
	dl.Blackhole()
	dark := time.Now()

	var ev event.Event
	for ev.Scope != event.ScopeStream {
		ev = receive(t, recv, 1, 30*time.Second)[0].Event
	}
	samples := rttSamples(t, sc.Process.Output(), conn)
	last, first := samples[len(samples)-1], samples[0]
	t.Logf("%d samples from %s to %s; the event: %s, rtt_last %s, rtt_min %s, rtt_smoothed %s",
		len(samples), first.rtt, last.rtt, ev.Reason, ev.RTT.Last, ev.RTT.Min, ev.RTT.Smoothed)
	if ev.Reason != event.ReasonKeepaliveTimeout || ev.ConnectionID != conn {
		t.Fatalf("event %+v, want KEEPALIVE_TIMEOUT of %s", ev, conn)
	}
	if !ev.RTT.Known() || ev.RTT.Last != last.rtt || ev.RTT.Min != last.min || ev.RTT.Smoothed != last.smoothed {
		t.Errorf("event RTT %+v, want the last sample the sidecar logged: %+v", ev.RTT, last)
	}
	// Load on the machine can only lengthen a sample: the minimum is at
	// least the first step's round trip and below the second's.
	if lo, next := 2*steps[0], 2*steps[1]; ev.RTT.Min < lo || ev.RTT.Min >= next {
		t.Errorf("rtt_min %s, want the first step's round trip: at least %s, below the next step's %s", ev.RTT.Min, lo, next)
	}
	if hi := 2 * steps[len(steps)-1]; ev.RTT.Last < hi-hi/10 {
		t.Errorf("rtt_last %s, want at least the last step's round trip %s less 10%%", ev.RTT.Last, hi)
	}
	if *rttChart != "" {
		if err := drawRTTChart(*rttChart, samples, changes, steps, dark, ev); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *rttChart)
	}
}

// drawRTTChart draws the samples (dots), the smoothed RTT (line) and the
// moments the path changed, went dark and the event was detected.
func drawRTTChart(path string, samples []rttSample, changes []time.Time, steps []time.Duration, dark time.Time, ev event.Event) error {
	t0 := changes[0]
	sec := func(at time.Time) float64 { return at.Sub(t0).Seconds() }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pts, smooth := make(plotter.XYs, len(samples)), make(plotter.XYs, len(samples))
	top := 0.0
	for i, s := range samples {
		pts[i] = plotter.XY{X: sec(s.at), Y: ms(s.rtt)}
		smooth[i] = plotter.XY{X: sec(s.at), Y: ms(s.smoothed)}
		top = max(top, ms(s.rtt))
	}
	p := plot.New()
	p.Title.Text = "RTT of one connection before its death (real run; grey: the path's delay each way changes)"
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "ms"
	p.Y.Min, p.Y.Max = 0, top*1.5
	p.X.Min, p.X.Max = -0.5, sec(ev.DetectedAt)+5
	p.BackgroundColor = color.White
	p.Add(plotter.NewGrid())
	vline := func(x, y float64, c color.Color, label string) error {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: y}})
		if err != nil {
			return err
		}
		l.Color, l.Dashes = c, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: y}}, Labels: []string{label}})
		if err != nil {
			return err
		}
		p.Add(lab)
		return nil
	}
	grey, red := color.RGBA{0x90, 0x90, 0x90, 0xff}, color.RGBA{0xc0, 0x20, 0x20, 0xff}
	for i, c := range changes {
		if err := vline(sec(c), top*1.1, grey, fmt.Sprintf(" %s", steps[i])); err != nil {
			return err
		}
	}
	if err := vline(sec(dark), top*1.1, red, " path dark"); err != nil {
		return err
	}
	if err := vline(sec(ev.DetectedAt), top*1.0, red, " "+ev.Reason.String()); err != nil {
		return err
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Color, sc.GlyphStyle.Radius = color.RGBA{0x1f, 0x77, 0xb4, 0xff}, vg.Points(3)
	line, err := plotter.NewLine(smooth)
	if err != nil {
		return err
	}
	line.Color, line.Width = color.RGBA{0xff, 0x7f, 0x0e, 0xff}, vg.Points(2)
	p.Add(sc, line)
	p.Legend.Add("sample (PING → ACK)", sc)
	p.Legend.Add("smoothed (RFC 6298 SRTT)", line)
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}
