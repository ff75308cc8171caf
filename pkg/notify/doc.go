// Package notify delivers disconnect events (pkg/event) to the app's
// DisconnectNotify server over gRPC: a bounded queue whose overflow drops
// the oldest events and counts them, an event sent at once when no call is
// in flight and batched behind one that is, retries with backoff, and the
// start-up event that names this process's incarnation live. check/ is
// `sidecar notify-check`; watch/ serves pull mode (DisconnectWatch).
//
// It owns the push side of the wire contract (api/hangup/notify/v1). It
// must not decide what is a disconnect (pkg/proxy and pkg/keepalive do),
// and it must never block the relay: Publish does not wait.
package notify
