// Command waterfall renders one trace from Jaeger's query HTTP API as a PNG
// waterfall (see internal/waterfall).
//
//	go run ./tools/waterfall -jaeger http://127.0.0.1:16686 -trace <id> -o trace.png
//	go run ./tools/waterfall -jaeger http://127.0.0.1:16686 -service hangup-demo \
//	    -tag hangup.disconnect.reason=RST_STREAM -wait 20s -o trace.png
//	curl -s 'http://127.0.0.1:16686/api/traces?service=hangup' | go run ./tools/waterfall -o trace.png
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hangup-dev/hangup/internal/jaegertest"
	"github.com/hangup-dev/hangup/internal/waterfall"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "waterfall:", err)
		os.Exit(1)
	}
}

// tagFlags collects repeated -tag key=value flags.
type tagFlags map[string]string

func (t tagFlags) String() string { return fmt.Sprint(map[string]string(t)) }

func (t tagFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: want key=value, e.g. hangup.disconnect.reason=RST_STREAM", s)
	}
	t[k] = v
	return nil
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("waterfall", flag.ContinueOnError)
	tags := tagFlags{}
	jaeger := fs.String("jaeger", "", "Jaeger query base URL, e.g. http://127.0.0.1:16686; fetch the trace from it (with -trace or -service)")
	in := fs.String("in", "-", "Jaeger API JSON file to read when -jaeger is not set; - for stdin")
	traceID := fs.String("trace", "", "trace id to draw; default the first trace in the JSON, or the newest one -service finds")
	service := fs.String("service", "", "with -jaeger: search this service's traces (of the last hour) instead of naming one with -trace")
	fs.Var(tags, "tag", "with -service: only traces with a span carrying this tag, key=value; repeatable")
	wait := fs.Duration("wait", 0, "with -service: keep searching this long until a trace matches (spans arrive in batches)")
	out := fs.String("o", "trace.png", "PNG file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: want only flags", fs.Args())
	}

	var tr jaegertest.Trace
	var err error
	switch {
	case *jaeger != "" && *traceID != "":
		tr, err = fetch(*jaeger, *traceID)
	case *jaeger != "" && *service != "":
		tr, err = search(*jaeger, *service, tags, *wait)
	case *jaeger != "":
		return errors.New("-jaeger needs -trace <trace id> or -service <name>")
	default:
		tr, err = decodeFile(*in, *traceID)
	}
	if err != nil {
		return err
	}
	img, err := waterfall.Render(tr)
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	_, err = fmt.Fprintf(stdout, "trace %s (%d spans) drawn to %s\n", tr.TraceID, len(tr.Spans), *out)
	return err
}

// fetch reads one trace from /api/traces/{id}.
func fetch(base, traceID string) (jaegertest.Trace, error) {
	u := strings.TrimSuffix(base, "/") + "/api/traces/" + url.PathEscape(traceID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return jaegertest.Trace{}, fmt.Errorf("-jaeger %q: %w", base, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return jaegertest.Trace{}, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jaegertest.Trace{}, fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	return waterfall.Decode(resp.Body, traceID)
}

// search polls Jaeger for service's traces matching tags until one exists
// or wait has passed, and returns the newest.
func search(base, service string, tags map[string]string, wait time.Duration) (jaegertest.Trace, error) {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		traces, err := jaegertest.Search(base, service, tags)
		if err != nil {
			return jaegertest.Trace{}, err
		}
		if len(traces) > 0 {
			sort.Slice(traces, func(i, j int) bool { return start(traces[i]) > start(traces[j]) })
			return traces[0], nil
		}
		if time.Now().After(deadline) {
			return jaegertest.Trace{}, fmt.Errorf("no trace of service %q with tags %v in Jaeger at %s (waited %v)", service, tags, base, wait)
		}
		<-tick.C
	}
}

// start is a trace's earliest span start, µs.
func start(tr jaegertest.Trace) int64 {
	var s int64
	for i, sp := range tr.Spans {
		if i == 0 || sp.StartTime < s {
			s = sp.StartTime
		}
	}
	return s
}

func decodeFile(in, traceID string) (jaegertest.Trace, error) {
	var r io.Reader = os.Stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return jaegertest.Trace{}, err
		}
		defer f.Close()
		r = f
	}
	return waterfall.Decode(r, traceID)
}
