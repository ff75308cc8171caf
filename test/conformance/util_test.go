package conformance

import (
	"bytes"
	"strings"
)

// splitID splits an h2spec case id such as "http2/6.5.3/1" into its
// elements: "http2", "6", "5", "3", "1".
func splitID(id string) []string {
	return strings.FieldsFunc(id, func(r rune) bool { return r == '/' || r == '.' })
}

// tail returns the last n lines of out, for logs that should show a
// tool's summary without its whole transcript.
func tail(out []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
