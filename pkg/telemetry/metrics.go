package telemetry

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/grace"
	"github.com/hangup-dev/hangup/pkg/notify"
	"github.com/hangup-dev/hangup/pkg/notify/watch"
)

// Metric names, in OpenTelemetry style. The Prometheus exposition turns the
// dots into underscores and adds unit and _total suffixes, e.g.
// hangup.disconnects becomes hangup_disconnects_total and
// hangup.detection.latency becomes hangup_detection_latency_seconds.
const (
	MetricConnectionsActive    = "hangup.connections.active"
	MetricStreamsActive        = "hangup.streams.active"
	MetricDisconnects          = "hangup.disconnects"
	MetricDetectionLatency     = "hangup.detection.latency"
	MetricNotifyLatency        = "hangup.notify.latency"
	MetricNotifyQueueDepth     = "hangup.notify.queue.depth"
	MetricNotifyDropped        = "hangup.notify.dropped"
	MetricNotifyHeadersDropped = "hangup.notify.headers_dropped"
	MetricNotifyRetries        = "hangup.notify.retries"
	MetricNotifyDelivered      = "hangup.notify.delivered"
	MetricKeepalivePings       = "hangup.keepalive.pings"
	MetricKeepaliveTimeouts    = "hangup.keepalive.timeouts"
	MetricRTT                  = "hangup.rtt"
	MetricAbuseGoAways         = "hangup.abuse.goaways"
	MetricSpansDropped         = "hangup.telemetry.spans.dropped"
	MetricWatchWatchers        = "hangup.watch.watchers"
	MetricWatchSent            = "hangup.watch.sent"
	MetricWatchGaps            = "hangup.watch.gaps"
	MetricWatchMissed          = "hangup.watch.missed"
	MetricGraceEvents          = "hangup.grace.events"
	MetricGraceHolding         = "hangup.grace.holding"
)

// Metric attribute keys.
const (
	AttrReason    = attribute.Key("reason")    // event.Reason name
	AttrWho       = attribute.Key("initiator") // event.Initiator name
	AttrAbuseKind = attribute.Key("kind")      // e.g. too_many_pings
	AttrOutcome   = attribute.Key("outcome")   // reconnect grace: held, resumed, expired
	AttrWhere     = attribute.Key("where")     // where spans were dropped: span_queue, export_queue, export
)

// latencyBuckets are the histogram bounds in seconds: detection is expected
// in milliseconds (RST_STREAM) up to tens of seconds (keepalive timeout),
// delivery in milliseconds unless the app is down.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60,
}

// rttBuckets are the RTT histogram's bounds in seconds: from a client in
// the same zone (below a millisecond) to a mobile one on a bad link or
// one too busy to answer (seconds).
var rttBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1,
	0.2, 0.5, 1, 2, 5, 10,
}

const (
	numReasons    = int(event.ReasonShutdown) + 1
	numInitiators = int(event.InitiatorApp) + 1
)

// Metrics holds hangup's instruments. Its methods are safe for concurrent
// use and cheap enough for the relay's connection loop: the ones without a
// free-form argument do not allocate (see BenchmarkMetrics). A nil *Metrics
// is valid and records nothing, for relays built without telemetry.
//
// The active connections and streams change on every stream, so they are
// plain atomic counters, read by observable instruments when /metrics is
// scraped: an SDK Add costs a hundred times more.
type Metrics struct {
	ctx context.Context // for the instruments' Add / Record; never cancelled

	conns, streams    atomic.Int64
	disconnects       metric.Int64Counter
	detection, notify metric.Float64Histogram
	rtt               metric.Float64Histogram
	pings, timeouts   metric.Int64Counter
	abuse             metric.Int64Counter

	// disconnectOpts[reason][initiator] is built once, so that Disconnect
	// does not build an attribute set per call.
	disconnectOpts [numReasons][numInitiators][]metric.AddOption

	meter metric.Meter
}

func newMetrics(m metric.Meter, tr *Tracer) (*Metrics, error) {
	ms := &Metrics{ctx: context.Background(), meter: m}
	var err error
	// first keeps the first error so that the instruments read as a list.
	first := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	var e error
	_, e = m.Int64ObservableUpDownCounter(MetricConnectionsActive, metric.WithUnit("{connection}"),
		metric.WithDescription("Client connections being relayed."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(ms.conns.Load())
			return nil
		}))
	first(e)
	_, e = m.Int64ObservableUpDownCounter(MetricStreamsActive, metric.WithUnit("{stream}"),
		metric.WithDescription("HTTP/2 streams being relayed."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(ms.streams.Load())
			return nil
		}))
	first(e)
	ms.disconnects, e = m.Int64Counter(MetricDisconnects, metric.WithUnit("{disconnect}"),
		metric.WithDescription("Disconnects detected, by reason and initiator."))
	first(e)
	ms.detection, e = m.Float64Histogram(MetricDetectionLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from the cause of a disconnect (last frame, ping sent) to its detection."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	first(e)
	ms.notify, e = m.Float64Histogram(MetricNotifyLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from publishing a disconnect event to the app's acknowledgement."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	first(e)
	ms.rtt, e = m.Float64Histogram(MetricRTT, metric.WithUnit("s"),
		metric.WithDescription("Round trips from hangup's PINGs to clients to their ACKs, one per timed ACK."),
		metric.WithExplicitBucketBoundaries(rttBuckets...))
	first(e)
	ms.pings, e = m.Int64Counter(MetricKeepalivePings, metric.WithUnit("{ping}"),
		metric.WithDescription("Keepalive PINGs hangup sent to clients."))
	first(e)
	ms.timeouts, e = m.Int64Counter(MetricKeepaliveTimeouts, metric.WithUnit("{timeout}"),
		metric.WithDescription("Keepalive PINGs that got no ACK in time."))
	first(e)
	ms.abuse, e = m.Int64Counter(MetricAbuseGoAways, metric.WithUnit("{goaway}"),
		metric.WithDescription("GOAWAYs hangup sent to abusive clients, by kind."))
	first(e)
	if tr != nil {
		where := [...]metric.ObserveOption{
			metric.WithAttributes(AttrWhere.String(DropSpanQueue)),
			metric.WithAttributes(AttrWhere.String(DropExportQueue)),
			metric.WithAttributes(AttrWhere.String(DropExport)),
		}
		_, e = m.Int64ObservableCounter(MetricSpansDropped, metric.WithUnit("{span}"),
			metric.WithDescription("Spans or span changes lost, by where: the span queue or the export queue was full, or the export failed."),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				d := tr.Drops()
				o.Observe(int64(d.SpanQueue), where[0])
				o.Observe(int64(d.ExportQueue), where[1])
				o.Observe(int64(d.Export), where[2])
				return nil
			}))
		first(e)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: create instruments: %w", err)
	}
	for r := range numReasons {
		for i := range numInitiators {
			ms.disconnectOpts[r][i] = []metric.AddOption{metric.WithAttributeSet(disconnectAttrs(event.Reason(r), event.Initiator(i)))}
		}
	}
	return ms, nil
}

func disconnectAttrs(r event.Reason, i event.Initiator) attribute.Set {
	return attribute.NewSet(AttrReason.String(r.String()), AttrWho.String(i.String()))
}

// ConnOpened counts a new client connection as active.
func (m *Metrics) ConnOpened() {
	if m != nil {
		m.conns.Add(1)
	}
}

// ConnClosed counts a client connection as gone.
func (m *Metrics) ConnClosed() {
	if m != nil {
		m.conns.Add(-1)
	}
}

// StreamOpened counts a new stream as active.
func (m *Metrics) StreamOpened() {
	if m != nil {
		m.streams.Add(1)
	}
}

// StreamClosed counts a stream as gone.
func (m *Metrics) StreamClosed() {
	if m != nil {
		m.streams.Add(-1)
	}
}

// Disconnect counts one detected disconnect.
func (m *Metrics) Disconnect(r event.Reason, i event.Initiator) {
	if m == nil {
		return
	}
	if r >= 0 && int(r) < numReasons && i >= 0 && int(i) < numInitiators {
		m.disconnects.Add(m.ctx, 1, m.disconnectOpts[r][i]...)
		return
	}
	m.disconnects.Add(m.ctx, 1, metric.WithAttributeSet(disconnectAttrs(r, i)))
}

// DetectionLatency records how long a disconnect took to detect.
func (m *Metrics) DetectionLatency(d time.Duration) {
	if m != nil {
		m.detection.Record(m.ctx, d.Seconds())
	}
}

// NotifyLatency records how long a disconnect event took to be
// acknowledged. Telemetry.OnDelivered calls it.
func (m *Metrics) NotifyLatency(d time.Duration) {
	if m != nil {
		m.notify.Record(m.ctx, d.Seconds())
	}
}

// RTT records one round-trip sample of a client connection.
func (m *Metrics) RTT(d time.Duration) {
	if m != nil {
		m.rtt.Record(m.ctx, d.Seconds())
	}
}

// KeepalivePing counts a keepalive PING sent to a client.
func (m *Metrics) KeepalivePing() {
	if m != nil {
		m.pings.Add(m.ctx, 1)
	}
}

// KeepaliveTimeout counts a keepalive PING that was not acknowledged in time.
func (m *Metrics) KeepaliveTimeout() {
	if m != nil {
		m.timeouts.Add(m.ctx, 1)
	}
}

// AbuseGoAway counts a GOAWAY sent to an abusive client; kind names the
// abuse, e.g. "too_many_pings" or "rapid_reset". It builds an attribute set
// per call (it is rare), so it allocates.
func (m *Metrics) AbuseGoAway(kind string) {
	if m == nil {
		return
	}
	m.abuse.Add(m.ctx, 1, metric.WithAttributes(AttrAbuseKind.String(kind)))
}

// ObserveWatch exposes pull mode's counters, read from c at each
// collection (pass (*watch.Hub).Counters): the Watch streams open now as
// hangup.watch.watchers, and the events sent, the gaps reported
// (responses with missed_before) and the events they covered as counters.
// Call it once, when the Hub exists.
func (m *Metrics) ObserveWatch(c func() watch.Counters) error {
	watchers, err := m.meter.Int64ObservableGauge(MetricWatchWatchers, metric.WithUnit("{watcher}"),
		metric.WithDescription("DisconnectWatch.Watch streams open now."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricWatchWatchers, err)
	}
	counters := []struct {
		name, unit, desc string
		inst             metric.Int64ObservableCounter
	}{
		{MetricWatchSent, "{event}", "Events sent to Watch streams, once per watcher and send.", nil},
		{MetricWatchGaps, "{gap}", "Watch responses that reported events the watcher will never get (missed_before > 0).", nil},
		{MetricWatchMissed, "{event}", "Events reported missed to watchers: no longer in the replay buffer when asked for.", nil},
	}
	insts := []metric.Observable{watchers}
	for i := range counters {
		cn := &counters[i]
		if cn.inst, err = m.meter.Int64ObservableCounter(cn.name, metric.WithUnit(cn.unit), metric.WithDescription(cn.desc)); err != nil {
			return fmt.Errorf("telemetry: create %s: %w", cn.name, err)
		}
		insts = append(insts, cn.inst)
	}
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c()
		o.ObserveInt64(watchers, s.Watchers)
		for i, v := range []uint64{s.Sent, s.Gaps, s.Missed} {
			o.ObserveInt64(counters[i].inst, int64(v))
		}
		return nil
	}, insts...)
	if err != nil {
		return fmt.Errorf("telemetry: observe watch: %w", err)
	}
	return nil
}

// ObserveGrace exposes reconnect grace's counters, read from stats at each
// collection (pass (*grace.Grace).Stats): hangup.grace.events by outcome
// (held; then resumed, or expired: sent unchanged when the grace ended,
// the bound was reached or the sidecar shut down) and the events held now
// as hangup.grace.holding. Call it once, when the Grace exists.
func (m *Metrics) ObserveGrace(stats func() grace.Stats) error {
	events, err := m.meter.Int64ObservableCounter(MetricGraceEvents, metric.WithUnit("{event}"),
		metric.WithDescription("Stream events of lost connections under reconnect grace, by outcome: held, resumed, expired."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricGraceEvents, err)
	}
	holding, err := m.meter.Int64ObservableGauge(MetricGraceHolding, metric.WithUnit("{event}"),
		metric.WithDescription("Stream events held by reconnect grace now."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricGraceHolding, err)
	}
	held := metric.WithAttributes(AttrOutcome.String("held"))
	resumed := metric.WithAttributes(AttrOutcome.String("resumed"))
	expired := metric.WithAttributes(AttrOutcome.String("expired"))
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(events, int64(s.Held), held)
		o.ObserveInt64(events, int64(s.Resumed), resumed)
		o.ObserveInt64(events, int64(s.Expired), expired)
		o.ObserveInt64(holding, int64(s.Holding))
		return nil
	}, events, holding)
	if err != nil {
		return fmt.Errorf("telemetry: observe grace: %w", err)
	}
	return nil
}

// ObserveNotifier exposes a notifier's own counters, read from stats at
// each collection (pass (*notify.Notifier).Stats): the queue depth as
// hangup.notify.queue.depth and the drops, retries and deliveries as
// counters. Call it once, when the notifier exists; the observation stops
// at Shutdown.
func (m *Metrics) ObserveNotifier(stats func() notify.Stats) error {
	depth, err := m.meter.Int64ObservableGauge(MetricNotifyQueueDepth, metric.WithUnit("{event}"),
		metric.WithDescription("Disconnect events waiting for delivery, the batch in flight included."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricNotifyQueueDepth, err)
	}
	dropped, err := m.meter.Int64ObservableCounter(MetricNotifyDropped, metric.WithUnit("{event}"),
		metric.WithDescription("Disconnect events given up: queue overflow, drain timeout, publish after close."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricNotifyDropped, err)
	}
	headersDropped, err := m.meter.Int64ObservableCounter(MetricNotifyHeadersDropped, metric.WithUnit("{event}"),
		metric.WithDescription("Disconnect events sent without their request headers because the app refused them as too large."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricNotifyHeadersDropped, err)
	}
	retries, err := m.meter.Int64ObservableCounter(MetricNotifyRetries, metric.WithUnit("{call}"),
		metric.WithDescription("Notify calls that repeated a failed call."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricNotifyRetries, err)
	}
	delivered, err := m.meter.Int64ObservableCounter(MetricNotifyDelivered, metric.WithUnit("{event}"),
		metric.WithDescription("Disconnect events the app acknowledged."))
	if err != nil {
		return fmt.Errorf("telemetry: create %s: %w", MetricNotifyDelivered, err)
	}
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(depth, int64(s.QueueDepth))
		o.ObserveInt64(dropped, int64(s.Dropped))
		o.ObserveInt64(headersDropped, int64(s.HeadersDropped))
		o.ObserveInt64(retries, int64(s.Retries))
		o.ObserveInt64(delivered, int64(s.Delivered))
		return nil
	}, depth, dropped, headersDropped, retries, delivered)
	if err != nil {
		return fmt.Errorf("telemetry: observe notifier: %w", err)
	}
	return nil
}
