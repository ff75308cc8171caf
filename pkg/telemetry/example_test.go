package telemetry_test

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/telemetry"
)

// Example shows the calls a relay makes for one connection with one stream
// that the client resets. In production Options is empty and the OTEL_*
// environment decides; here a recorder shows the spans.
func Example() {
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{SpanProcessor: rec})
	if err != nil {
		panic(err)
	}
	m, tr := tel.Metrics(), tel.Tracer() // tr is nil when tracing is off; every call below still works

	// Connection accepted.
	m.ConnOpened()
	conn := tr.StartConn(telemetry.ConnStart{ID: "c1", Peer: "10.0.0.7:51234", Start: time.Now()})

	// Request HEADERS: start the span, forward its traceparent to the app.
	m.StreamOpened()
	st := conn.StartStream(telemetry.StreamStart{
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // from the client, if any
		Method:      "/echo.v1.Echo/Stream",
		Authority:   "echo:50051",
		StreamID:    1,
		Start:       time.Now(),
	})
	forwarded := st.Traceparent() // replaces the client's traceparent towards the app
	_ = forwarded

	// The client resets the stream.
	now := time.Now()
	st.RSTStream(now, 0x8, event.InitiatorClient)
	ev := event.Event{ID: "e1", Reason: event.ReasonRSTStream, TraceID: st.TraceID(), SpanID: st.SpanID(), TraceSampled: st.Sampled()}
	m.Disconnect(ev.Reason, event.InitiatorClient)
	m.DetectionLatency(time.Millisecond)
	st.End(telemetry.StreamEnd{At: now, Reason: ev.Reason, Initiator: event.InitiatorClient})
	m.StreamClosed()

	// The notifier's OnDelivered, later, on its own goroutine.
	tel.OnDelivered(ev, 1, 3*time.Millisecond)

	conn.End(time.Now(), event.ReasonUnspecified, event.InitiatorUnspecified)
	m.ConnClosed()
	if err := tel.Shutdown(context.Background()); err != nil {
		panic(err)
	}

	var names []string
	for _, s := range rec.Ended() {
		names = append(names, fmt.Sprintf("%s %s", s.Name(), s.Status().Code))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n)
	}
	// Output:
	// echo.v1.Echo/Stream Error
	// hangup.connection Ok
	// hangup.notify Unset
}
