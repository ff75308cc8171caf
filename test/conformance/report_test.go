package conformance

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// sampleReport is the shape of h2spec v2.2.1's JUnit report, trimmed.
const sampleReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="3.5. HTTP/2 Connection Preface" package="http2/3.5" id="3.5" tests="2" skipped="0" failures="0" errors="1">
    <testcase package="http2/3.5" classname="Sends client connection preface" time="0.0002"></testcase>
    <testcase package="http2/3.5" classname="Sends invalid connection preface" time="0.0003">
      <error>Connection closed</error>
    </testcase>
  </testsuite>
  <testsuite name="6.9.2. Initial Flow-Control Window Size" package="http2/6.9.2" id="6.9.2" tests="2" skipped="1" failures="1" errors="0">
    <testcase package="http2/6.9.2" classname="Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame" time="0.0004">
      <failure>DATA Frame (length:1, flags:0x00, stream_id:1)</failure>
    </testcase>
    <testcase package="http2/6.9.2" classname="Sends a SETTINGS frame for window size to be negative" time="0.0001">
      <skipped/>
    </testcase>
  </testsuite>
  <testsuite name="2.3.3. Index Address Space" package="hpack/2.3.3" id="2.3.3" tests="1" skipped="0" failures="0" errors="0">
    <testcase package="hpack/2.3.3" classname="Sends a indexed header field representation with invalid index" time="0.0003"></testcase>
  </testsuite>
</testsuites>
`

func TestReadReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.xml")
	if err := os.WriteFile(path, []byte(sampleReport), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readReport(path)
	if err != nil {
		t.Fatalf("readReport: %v", err)
	}
	want := []caseResult{
		{suite: "http2/3.5", index: 1, description: "Sends client connection preface", passed: true},
		{suite: "http2/3.5", index: 2, description: "Sends invalid connection preface"},
		{suite: "http2/6.9.2", index: 1, description: "Changes SETTINGS_INITIAL_WINDOW_SIZE after sending HEADERS frame"},
		{suite: "http2/6.9.2", index: 2, description: "Sends a SETTINGS frame for window size to be negative"},
		{suite: "hpack/2.3.3", index: 1, description: "Sends a indexed header field representation with invalid index", passed: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("readReport =\n%+v\nwant\n%+v", got, want)
	}
}

func TestReadReportRejects(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{name: "not XML", content: "Finished in 1 seconds"},
		{name: "no cases", content: `<testsuites><testsuite package="http2/3.5"></testsuite></testsuites>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.xml")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, err := readReport(path); err == nil {
				t.Errorf("readReport = %+v, want an error", got)
			}
		})
	}
}

func TestCompareCaseIDs(t *testing.T) {
	ids := []string{"http2/6.10/1", "generic/3.1/2", "http2/6.9.1/2", "http2/6.9/1", "http2/6.9.1/10", "hpack/2.3.3/1"}
	slices.SortFunc(ids, compareCaseIDs)
	want := []string{"generic/3.1/2", "hpack/2.3.3/1", "http2/6.9/1", "http2/6.9.1/2", "http2/6.9.1/10", "http2/6.10/1"}
	if !slices.Equal(ids, want) {
		t.Errorf("sorted ids = %q, want %q", ids, want)
	}
}
