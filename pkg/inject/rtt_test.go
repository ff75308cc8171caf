package inject

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// rttArgs returns the --rtt-* arguments of the sidecar in ops.
func rttArgs(t *testing.T, ops []Operation) []string {
	t.Helper()
	for _, op := range ops {
		var containers []corev1.Container
		switch v := op.Value.(type) {
		case corev1.Container:
			containers = []corev1.Container{v}
		case []corev1.Container:
			containers = v
		}
		for _, c := range containers {
			if c.Name != SidecarName {
				continue
			}
			var out []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--rtt-") {
					out = append(out, a)
				}
			}
			return out
		}
	}
	t.Fatalf("no %s container in the patch", SidecarName)
	return nil
}

// TestRTTAnnotationsOverChartDefaults: the chart's sidecar.rttInterval and
// sidecar.rttHeader reach every pod, and a pod's annotations turn either
// on, change it or turn it off again.
func TestRTTAnnotationsOverChartDefaults(t *testing.T) {
	tests := []struct {
		name        string
		interval    time.Duration // the chart's default
		header      bool          // the chart's default
		annotations map[string]string
		want        []string // the sidecar's --rtt-* args
		denied      string   // substring of the denial; empty: injected
	}{
		{name: "off by default", want: nil},
		{name: "chart turns both on", interval: 10 * time.Second, header: true,
			want: []string{"--rtt-interval=10s", "--rtt-header=true"}},
		{name: "pod turns both on", annotations: map[string]string{AnnotationRTTInterval: "2s", AnnotationRTTHeader: "true"},
			want: []string{"--rtt-interval=2s", "--rtt-header=true"}},
		{name: "pod changes the chart's interval", interval: 10 * time.Second, annotations: map[string]string{AnnotationRTTInterval: "1m30s"},
			want: []string{"--rtt-interval=1m30s"}},
		{name: "pod turns the chart's interval off", interval: 10 * time.Second, header: true,
			annotations: map[string]string{AnnotationRTTInterval: "0"}, want: []string{"--rtt-header=true"}},
		{name: "pod turns the chart's header off", interval: 10 * time.Second, header: true,
			annotations: map[string]string{AnnotationRTTHeader: "false"}, want: []string{"--rtt-interval=10s"}},
		{name: "the minimum itself", annotations: map[string]string{AnnotationRTTInterval: "1s"}, want: []string{"--rtt-interval=1s"}},
		{name: "below the minimum", annotations: map[string]string{AnnotationRTTInterval: "999ms"},
			denied: `annotation hangup.dev/rtt-interval="999ms": want a Go duration of at least 1s`},
		{name: "negative", annotations: map[string]string{AnnotationRTTInterval: "-5s"},
			denied: `annotation hangup.dev/rtt-interval="-5s": want a Go duration of at least 1s`},
		{name: "no unit", annotations: map[string]string{AnnotationRTTInterval: "5"},
			denied: `annotation hangup.dev/rtt-interval="5": want`},
		{name: "empty interval", annotations: map[string]string{AnnotationRTTInterval: ""},
			denied: `annotation hangup.dev/rtt-interval="": want`},
		{name: "header in capitals", annotations: map[string]string{AnnotationRTTHeader: "True"},
			denied: `annotation hangup.dev/rtt-header="True": want "true" or "false"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(testImage)
			cfg.RTTInterval, cfg.RTTHeader = tc.interval, tc.header
			if err := cfg.Validate(); err != nil {
				t.Fatalf("chart defaults: %v", err)
			}
			pod := readFixture(t, "testdata/regular-port.yaml").Pod
			for k, v := range tc.annotations {
				pod.Annotations[k] = v
			}
			ops, err := Patch(Request{Pod: &pod}, cfg)
			if tc.denied != "" {
				if err == nil || !strings.Contains(err.Error(), tc.denied) {
					t.Fatalf("Patch: %v, want a denial containing %q", err, tc.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("Patch: %v", err)
			}
			if got := rttArgs(t, ops); !slices.Equal(got, tc.want) {
				t.Errorf("sidecar args %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLoadConfigRTT reads the chart's rttInterval and rttHeader, and
// refuses an interval the sidecar would refuse.
func TestLoadConfigRTT(t *testing.T) {
	tests := []struct {
		name         string
		yaml         string
		wantInterval time.Duration
		wantHeader   bool
		wantErr      string // substring; empty: success
	}{
		{name: "absent: the defaults", yaml: "image: x:1\n"},
		{name: "as the chart renders its defaults", yaml: "image: x:1\nrttInterval: \"0s\"\nrttHeader: false\n"},
		{name: "on", yaml: "image: x:1\nrttInterval: 5s\nrttHeader: true\n", wantInterval: 5 * time.Second, wantHeader: true},
		{name: "below the minimum", yaml: "image: x:1\nrttInterval: 100ms\n",
			wantErr: `rttInterval "100ms": want a Go duration of at least 1s such as 5s, or 0 for off`},
		{name: "not a duration", yaml: "image: x:1\nrttInterval: often\n", wantErr: `rttInterval "often"`},
		{name: "header not a bool", yaml: "image: x:1\nrttHeader: \"yes\"\n", wantErr: "rttHeader"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sidecar.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadConfig: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if c.RTTInterval != tc.wantInterval || c.RTTHeader != tc.wantHeader {
				t.Errorf("RTTInterval %s, RTTHeader %t; want %s, %t", c.RTTInterval, c.RTTHeader, tc.wantInterval, tc.wantHeader)
			}
		})
	}
}

// TestValidateRTTInterval: a Config built in code (not from the file) is
// held to the sidecar's minimum too.
func TestValidateRTTInterval(t *testing.T) {
	tests := []struct {
		name    string
		d       time.Duration
		wantErr bool
	}{
		{"off", 0, false},
		{"minimum", time.Second, false},
		{"below the minimum", time.Second - 1, true},
		{"negative", -time.Second, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig(testImage)
			c.RTTInterval = tc.d
			err := c.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate with RTTInterval %s: %v, want error %t", tc.d, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "rtt interval") {
				t.Errorf("error %q does not name the rtt interval", err)
			}
		})
	}
}
