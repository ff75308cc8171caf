package deploy_test

import (
	"testing"
	"time"
)

// TestChartRTTValues: the chart's sidecar.rttInterval and sidecar.rttHeader
// reach the webhook's sidecar config, and so every injected pod.
func TestChartRTTValues(t *testing.T) {
	tests := []struct {
		name         string
		set          []string
		wantInterval time.Duration
		wantHeader   bool
	}{
		{name: "defaults: off"},
		{name: "both on", set: []string{"sidecar.rttInterval=5s", "sidecar.rttHeader=true"}, wantInterval: 5 * time.Second, wantHeader: true},
		{name: "interval only", set: []string{"sidecar.rttInterval=1m"}, wantInterval: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := renderedSidecarConfig(t, splitDocs(t, helmTemplate(t, tc.set...)))
			if c.RTTInterval != tc.wantInterval || c.RTTHeader != tc.wantHeader {
				t.Errorf("rendered config has RTTInterval %s, RTTHeader %t; want %s, %t", c.RTTInterval, c.RTTHeader, tc.wantInterval, tc.wantHeader)
			}
		})
	}
}
