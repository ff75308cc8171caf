// Command waterfall renders one trace from Jaeger's query HTTP API as a PNG
// waterfall (see internal/waterfall).
//
//	go run ./tools/waterfall -jaeger http://127.0.0.1:16686 -trace <id> -o trace.png
//	curl -s 'http://127.0.0.1:16686/api/traces?service=hangup' | go run ./tools/waterfall -o trace.png
package main

import (
	"flag"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/hangup-dev/hangup/internal/waterfall"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "waterfall:", err)
		os.Exit(1)
	}
}

func run() error {
	jaeger := flag.String("jaeger", "", "Jaeger query base URL, e.g. http://127.0.0.1:16686; with -trace, fetch /api/traces/{id} from it")
	in := flag.String("in", "-", "Jaeger API JSON file to read when -jaeger is not set; - for stdin")
	traceID := flag.String("trace", "", "trace id to draw; default the first trace in the JSON")
	out := flag.String("o", "trace.png", "PNG file to write")
	flag.Parse()

	var r io.Reader
	switch {
	case *jaeger != "":
		if *traceID == "" {
			return fmt.Errorf("-jaeger needs -trace <trace id>")
		}
		u := strings.TrimSuffix(*jaeger, "/") + "/api/traces/" + url.PathEscape(*traceID)
		resp, err := http.Get(u)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetch %s: %s", u, resp.Status)
		}
		r = resp.Body
	case *in == "-":
		r = os.Stdin
	default:
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	tr, err := waterfall.Decode(r, *traceID)
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
	return f.Close()
}
