package telemetry

import (
	"context"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/internal/testtools"
	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/grace"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
)

func TestMetricsScrape(t *testing.T) {
	clearOTelEnv(t)
	tel, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer shutdown(t, tel)
	stats := notify.Stats{QueueDepth: 3, Dropped: 5, Retries: 7, Delivered: 11, HeadersDropped: 0}
	if err := tel.Metrics().ObserveNotifier(func() notify.Stats { return stats }); err != nil {
		t.Fatalf("ObserveNotifier: %v", err)
	}
	gstats := grace.Stats{Held: 4, Resumed: 1, Expired: 2, Holding: 1}
	if err := tel.Metrics().ObserveGrace(func() grace.Stats { return gstats }); err != nil {
		t.Fatalf("ObserveGrace: %v", err)
	}
	wc := watch.Counters{Watchers: 2, Sent: 10, Gaps: 1, Missed: 5}
	if err := tel.Metrics().ObserveWatch(func() watch.Counters { return wc }); err != nil {
		t.Fatalf("ObserveWatch: %v", err)
	}
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()

	m := tel.Metrics()
	// Something of every instrument exists before, so that the deltas below
	// are exact and not "appeared".
	m.ConnOpened()
	m.StreamOpened()
	m.Disconnect(event.ReasonRSTStream, event.InitiatorClient)
	m.DetectionLatency(time.Millisecond)
	m.NotifyLatency(time.Millisecond)
	m.KeepalivePing()
	m.KeepaliveTimeout()
	m.AbuseGoAway("too_many_pings")
	before := testtools.ScrapeMetrics(t, srv.URL)

	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.StreamOpened()
	m.StreamOpened()
	m.StreamOpened()
	m.StreamClosed()
	m.Disconnect(event.ReasonRSTStream, event.InitiatorClient)
	m.Disconnect(event.ReasonRSTStream, event.InitiatorClient)
	m.Disconnect(event.ReasonKeepaliveTimeout, event.InitiatorSidecar)
	m.Disconnect(event.Reason(99), event.InitiatorClient) // out of range: still counted
	m.DetectionLatency(250 * time.Millisecond)
	m.DetectionLatency(750 * time.Millisecond)
	tel.OnDelivered(event.Event{}, 1, 2*time.Second)
	m.KeepalivePing()
	m.KeepalivePing()
	m.KeepaliveTimeout()
	m.AbuseGoAway("too_many_pings")
	m.AbuseGoAway("rapid_reset")
	stats = notify.Stats{QueueDepth: 1, Dropped: 6, Retries: 9, Delivered: 12, HeadersDropped: 4}
	gstats = grace.Stats{Held: 7, Resumed: 3, Expired: 3, Holding: 1}
	wc = watch.Counters{Watchers: 1, Sent: 14, Gaps: 2, Missed: 12}
	after := testtools.ScrapeMetrics(t, srv.URL)

	tests := []struct {
		sample string
		delta  float64
	}{
		{"hangup_connections_active", 1},
		{"hangup_streams_active", 2},
		{"hangup_disconnects_total{initiator=CLIENT,reason=RST_STREAM}", 2},
		{"hangup_disconnects_total{initiator=SIDECAR,reason=KEEPALIVE_TIMEOUT}", 1},
		{"hangup_disconnects_total{initiator=CLIENT,reason=UNKNOWN}", 1},
		{"hangup_detection_latency_seconds_count", 2},
		{"hangup_detection_latency_seconds_sum", 1},
		{"hangup_notify_latency_seconds_count", 1},
		{"hangup_notify_latency_seconds_sum", 2},
		{"hangup_keepalive_pings_total", 2},
		{"hangup_keepalive_timeouts_total", 1},
		{"hangup_abuse_goaways_total{kind=too_many_pings}", 1},
		{"hangup_abuse_goaways_total{kind=rapid_reset}", 1},
		{"hangup_notify_queue_depth", -2},
		{"hangup_notify_dropped_total", 1},
		{"hangup_notify_headers_dropped_total", 4},
		{"hangup_notify_retries_total", 2},
		{"hangup_notify_delivered_total", 1},
		{"hangup_grace_events_total{outcome=held}", 3},
		{"hangup_grace_events_total{outcome=resumed}", 2},
		{"hangup_grace_events_total{outcome=expired}", 1},
		{"hangup_grace_holding", 0},
		{"hangup_watch_watchers", -1},
		{"hangup_watch_sent_total", 4},
		{"hangup_watch_gaps_total", 1},
		{"hangup_watch_missed_total", 7},
	}
	for _, tc := range tests {
		t.Run(tc.sample, func(t *testing.T) {
			a, ok := after[tc.sample]
			if !ok {
				t.Fatalf("sample %s missing from /metrics; have %v", tc.sample, keys(after))
			}
			if d := a - before[tc.sample]; d < tc.delta-1e-9 || d > tc.delta+1e-9 {
				t.Errorf("%s moved by %v (%v → %v), want %v", tc.sample, d, before[tc.sample], a, tc.delta)
			}
		})
	}
}

func keys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
