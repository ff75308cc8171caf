// Package grace is reconnect grace: it holds the out-of-band events of a
// stream whose connection was lost (keepalive timeout, TCP close or reset)
// for the grace of the stream's method, and sends one RESUMED event
// instead when a new stream carrying the same session key (the value of a
// request header the user names) arrives within it. When the grace
// expires, or the sidecar shuts down, the held events are sent unchanged:
// their DetectedAt is still the time of the loss. Nothing held is lost.
//
// Only losses of the network are held. A client's RST_STREAM or GOAWAY is
// a decision, not a loss (a client that switches networks sends neither);
// the sidecar's policy reasons (idle, age, ping abuse, protocol error) and
// SHUTDOWN end connections the client cannot resume here, and SHUTDOWN
// comes from a process that is going away and must flush, not wait.
//
// A Grace sits between the relay (pkg/proxy) and the delivery (pkg/notify
// and its Watch hub), so both get what it emits; the relay tells it of new
// streams on graced methods (StreamOpened). It imports only the standard
// library and the event model, so its logic is tested with an injected
// clock and timer. It never decides what is a disconnect (pkg/proxy does)
// and it never delays the relay: the in-band RST_STREAM(CANCEL) to the app
// is sent by the relay before any event reaches this package.
package grace
