// Package telemetry sets up hangup's OpenTelemetry tracing and metrics and
// offers span and metric helpers cheap enough for the relay's hot path.
//
// Configuration follows the OpenTelemetry SDK environment variables, read by
// the OpenTelemetry packages themselves: the exporter as
// go.opentelemetry.io/contrib/exporters/autoexport picks it
// (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, ...; for
// OTLP the SDK's own gRPC or HTTP client sends what hangup encodes, see
// otlpExporter), the batch span processor's OTEL_BSP_* (its queue and batch
// sizes read here, see batchFromEnv: unlike the SDK, which ignores a bad
// value, Setup fails on one), the resource by resource.WithFromEnv
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) and the sampler as the trace
// SDK picks it (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; see
// samplerFromEnv, which also fails on a bad value). The spans are hangup's
// own (see recorder), handed to the SDK's batch span processor.
//
// Tracing is off, and costs one nil check per stream, when
// OTEL_SDK_DISABLED=true or when no exporter is configured at all
// (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT all unset) or OTEL_TRACES_EXPORTER=none.
// Metrics are always on: they are served on the admin port's /metrics, which
// is not an OpenTelemetry export, so OTEL_SDK_DISABLED does not remove them.
//
// It records what the relay reports; it must not decide what is a
// disconnect or deliver events to the app (pkg/notify does).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/hangup-dev/hangup/pkg/event"
)

// DefaultServiceName is the service.name used when neither Options nor
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name one.
const DefaultServiceName = "hangup"

// instrumentationName names hangup's tracer and meter (the OTel scope).
const instrumentationName = "github.com/hangup-dev/hangup/pkg/telemetry"

// Options configures Setup. The zero value is valid.
type Options struct {
	// ServiceName is the default service.name; OTEL_SERVICE_NAME and
	// service.name in OTEL_RESOURCE_ATTRIBUTES override it.
	// Default: DefaultServiceName ("hangup").
	ServiceName string

	// Version becomes service.version. Default: unset.
	Version string

	// Logger receives setup decisions, dropped span operations and, when
	// set, the OpenTelemetry SDK's own errors (failed exports), which
	// otherwise go to the standard log package. That routing is
	// process-wide (otel.SetErrorHandler). Default: discard, and SDK
	// errors left as they are.
	Logger *slog.Logger

	// SpanExporter, for tests, replaces the exporter chosen from the
	// environment and turns tracing on whatever the environment says. It is
	// wrapped in a batch span processor. Default: from the environment.
	SpanExporter sdktrace.SpanExporter

	// SpanProcessor, for tests, replaces the exporter and its batch
	// processor (use a simple processor to see spans synchronously on
	// Shutdown). It wins over SpanExporter. Only its OnEnd, ForceFlush and
	// Shutdown are called, never OnStart (see recorder). Default: none.
	//
	// A SpanProcessor or SpanExporter passed in is Telemetry's once Setup
	// succeeds (Shutdown shuts it down), and still the caller's when Setup
	// rejects a setting.
	SpanProcessor sdktrace.SpanProcessor

	// Registry, for tests, replaces the private Prometheus registry that
	// /metrics serves. Default: a new registry per Setup.
	Registry *prometheus.Registry

	// SpanQueue bounds the span operations waiting for the background
	// goroutine; operations beyond it are dropped and counted.
	// Default: 4096. Minimum: 1.
	SpanQueue int
}

// defaultSpanQueue is Options.SpanQueue's default.
const defaultSpanQueue = 4096

// Telemetry owns the tracer and meter providers. Create it with Setup and
// stop it with Shutdown.
type Telemetry struct {
	tracer  *Tracer                // nil when tracing is off
	proc    sdktrace.SpanProcessor // the tracer's; nil when tracing is off
	mp      *sdkmetric.MeterProvider
	metrics *Metrics
	handler http.Handler
	log     *slog.Logger
}

// Setup builds the providers from the environment and opts. It starts one
// goroutine when tracing is on; Shutdown stops it.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	} else {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("opentelemetry", "error", err)
		}))
	}
	if opts.SpanQueue < 0 {
		return nil, fmt.Errorf("telemetry: SpanQueue %d: want 0 (default %d) or more", opts.SpanQueue, defaultSpanQueue)
	}
	if opts.SpanQueue == 0 {
		opts.SpanQueue = defaultSpanQueue
	}
	name := opts.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(name))}
	if opts.Version != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceVersion(opts.Version)))
	}
	// WithFromEnv comes last so that OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override the defaults above.
	attrs = append(attrs, resource.WithSchemaURL(semconv.SchemaURL), resource.WithFromEnv())
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}

	t := &Telemetry{log: log}

	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	// The standard Go and process collectors: goroutines, heap and open
	// descriptors are where a leak shows first, under the names every
	// Prometheus user already graphs.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("telemetry: register runtime metrics: %w", err)
		}
	}
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExp))
	t.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPromLogger{log}})

	drops := newDropCounter(log)
	sp, sampler, why, err := spanProcessor(ctx, opts, drops)
	if err != nil {
		_ = t.mp.Shutdown(ctx)
		return nil, err
	}
	if sp == nil {
		log.Info("tracing off", "why", why)
	} else {
		log.Info("tracing on", "exporter", why, "sampler", sampler.Description())
		t.proc = sp
		t.tracer = newTracer(newRecorder(res, sampler, sp), opts.SpanQueue, drops)
	}

	t.metrics, err = newMetrics(t.mp.Meter(instrumentationName), t.tracer)
	if err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

// spanProcessor picks the span processor and the sampler, or nil and why
// tracing is off. Every setting is read before anything is built, so that
// an error leaves nothing running and a processor or exporter the caller
// passed in still the caller's. A batch span processor it builds counts
// its drops in drops.
func spanProcessor(ctx context.Context, opts Options, drops *dropCounter) (sdktrace.SpanProcessor, sdktrace.Sampler, string, error) {
	exporter := os.Getenv("OTEL_TRACES_EXPORTER")
	switch {
	case opts.SpanProcessor != nil, opts.SpanExporter != nil:
	case strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true"):
		return nil, nil, "OTEL_SDK_DISABLED=true", nil
	case exporter == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "":
		return nil, nil, "no exporter configured (OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_ENDPOINT unset)", nil
	case exporter == "none":
		return nil, nil, "OTEL_TRACES_EXPORTER=none", nil
	}
	sampler, err := samplerFromEnv()
	if err != nil {
		return nil, nil, "", err
	}
	if opts.SpanProcessor != nil {
		return opts.SpanProcessor, sampler, "Options.SpanProcessor", nil
	}
	b, err := batchFromEnv()
	if err != nil {
		return nil, nil, "", err
	}
	var exp sdktrace.SpanExporter
	why := "Options.SpanExporter"
	switch {
	case opts.SpanExporter != nil:
		exp = opts.SpanExporter
	case exporter == "" || exporter == "otlp":
		// What autoexport would pick, with hangup's cheaper encoding.
		if exp, err = newOTLPExporter(ctx); err != nil {
			return nil, nil, "", fmt.Errorf("telemetry: span exporter from OTEL_EXPORTER_OTLP_*: %w", err)
		}
		why = "otlp"
	default:
		// "none", autoexport's no-op, was taken above.
		if exp, err = autoexport.NewSpanExporter(ctx); err != nil {
			return nil, nil, "", fmt.Errorf("telemetry: span exporter from OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*: %w", err)
		}
		why = exporter
	}
	return newCountedProcessor(exp, b.queue, drops, sdktrace.WithMaxExportBatchSize(b.batch)), sampler, why, nil
}

// The batch span processor's defaults, which OTEL_BSP_MAX_QUEUE_SIZE and
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE override: the SDK's.
const (
	defaultBSPQueue = sdktrace.DefaultMaxQueueSize
	defaultBSPBatch = sdktrace.DefaultMaxExportBatchSize
)

// batchSizes are the batch span processor's queue and batch sizes.
type batchSizes struct{ queue, batch int }

// batchFromEnv reads OTEL_BSP_MAX_QUEUE_SIZE and
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE (the SDK reads the other OTEL_BSP_*
// variables itself): hangup needs the queue size to count what the
// processor drops (see countedProcessor). A batch larger than the queue
// becomes the default batch or the queue's size, whichever is smaller, as
// the SDK's NewBatchSpanProcessor does. Stricter than the SDK, which falls
// back to its default on a value that is not a number (and takes zero or a
// negative one), a value that is not a positive number is an error: the
// sidecar refuses to start rather than run with a queue it was not given.
func batchFromEnv() (batchSizes, error) {
	b := batchSizes{queue: defaultBSPQueue, batch: defaultBSPBatch}
	for _, v := range []struct {
		key string
		n   *int
	}{{"OTEL_BSP_MAX_QUEUE_SIZE", &b.queue}, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &b.batch}} {
		s := strings.TrimSpace(os.Getenv(v.key))
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return b, fmt.Errorf("telemetry: %s=%q: want a positive number of spans (default %d)", v.key, s, *v.n)
		}
		*v.n = n
	}
	if b.batch > b.queue {
		b.batch = min(defaultBSPBatch, b.queue)
	}
	return b, nil
}

// Tracing reports whether spans are recorded. When it is false Tracer
// returns nil and every span helper is a no-op.
func (t *Telemetry) Tracing() bool { return t != nil && t.tracer != nil }

// Tracer returns the span helper, nil when tracing is off. All its methods,
// and those of the Conn and Stream it returns, accept a nil receiver.
func (t *Telemetry) Tracer() *Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Metrics returns the metric instruments; nil (which records nothing) for
// a nil Telemetry.
func (t *Telemetry) Metrics() *Metrics {
	if t == nil {
		return nil
	}
	return t.metrics
}

// MetricsHandler serves the Prometheus text exposition of the metrics, for
// the admin port's /metrics.
func (t *Telemetry) MetricsHandler() http.Handler { return t.handler }

// OnDelivered records one acknowledged disconnect event: the
// hangup.notify.latency histogram and, when tracing is on, a hangup.notify
// span under the event's stream span (see Tracer.Notified). Its signature
// is notify.Config.OnDelivered's, so it can be assigned there directly.
func (t *Telemetry) OnDelivered(ev event.Event, attempts int, latency time.Duration) {
	t.Metrics().NotifyLatency(latency)
	t.Tracer().Notified(ev, attempts, latency)
}

// Shutdown ends the background span goroutine, flushes the spans it ended
// to the exporter and stops the providers. ctx bounds the flush.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tracer != nil {
		t.tracer.stop()
	}
	if t.proc != nil {
		if err := t.proc.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: flush spans: %w", err))
		}
	}
	if d := t.tracer.Drops(); d.Total() > 0 {
		t.log.Warn("spans dropped while tracing: traces are incomplete",
			DropSpanQueue, d.SpanQueue, DropExportQueue, d.ExportQueue, DropExport, d.Export)
	}
	if t.mp != nil {
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: stop meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}

// slogPromLogger routes promhttp's error log to slog.
type slogPromLogger struct{ log *slog.Logger }

func (l slogPromLogger) Println(v ...any) { l.log.Error("serve /metrics", "error", fmt.Sprint(v...)) }
