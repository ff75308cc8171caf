package deploy_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/hangup-dev/hangup/pkg/inject"
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
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(splitDocs(t, helmTemplate(t, tc.set...))["ConfigMap"][0], &cm); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "sidecar.yaml")
			if err := os.WriteFile(file, []byte(cm.Data["sidecar.yaml"]), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := inject.LoadConfig(file)
			if err != nil {
				t.Fatalf("rendered sidecar config: %v", err)
			}
			if c.RTTInterval != tc.wantInterval || c.RTTHeader != tc.wantHeader {
				t.Errorf("rendered config has RTTInterval %s, RTTHeader %t; want %s, %t", c.RTTInterval, c.RTTHeader, tc.wantInterval, tc.wantHeader)
			}
		})
	}
}
