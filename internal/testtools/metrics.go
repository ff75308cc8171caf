package testtools

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ScrapeMetrics fetches /metrics and returns every sample as "name{k=v,...}" →
// value; histograms contribute their _count and _sum.
func ScrapeMetrics(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name + labels(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labels(m)] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labels(m)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// labels renders a sample's labels, sorted, without the resource-derived
// ones (otel_scope_*, job, instance) that are none of these tests' business.
func labels(m *dto.Metric) string {
	var ls []string
	for _, l := range m.GetLabel() {
		if strings.HasPrefix(l.GetName(), "otel_") {
			continue
		}
		ls = append(ls, l.GetName()+"="+l.GetValue())
	}
	if len(ls) == 0 {
		return ""
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}
