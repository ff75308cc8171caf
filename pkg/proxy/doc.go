// Package proxy is hangup's data path: a one-to-one, frame-aware relay
// between HTTP/2 clients and the app, which sees every RST_STREAM, GOAWAY and
// PING and so knows when and why a client is gone.
//
// It owns the sockets, the frames on them and the streams they carry, and
// it decides when a client is gone. It does not decide keepalive, idle,
// age or drain timing (pkg/keepalive's pure policy does; keepalive.go runs
// its timer and actions), deliver events (it hands them to Config.Sink),
// or set telemetry up (it records into Config.Telemetry).
//
// One file per concern:
//
//   - server.go: listeners, accepting, handing a connection to a relay;
//     tcp.go: preface sniffing and the plain-TCP relay for the rest.
//   - conn.go: one relayed connection, its fields grouped by who guards
//     them. Methods that need conn.mu end in Locked.
//   - pump.go: a forwarder, one per direction, the same both ways: read,
//     park while quiet, linger, walk the frames of a batch, flush.
//     client.go and app.go: what each side's frames mean (frameRules).
//   - streams.go: every stream transition. disconnect.go: everything that
//     decides and reports how a connection or stream ended.
//   - keepalive.go: the policy's timer and actions. abuse.go, refuse.go:
//     abuse limits, and the streams the app never sees.
//   - frame.go, wire.go: frame headers, and one owner per socket's writes.
//     headers.go: header decoding and the re-encoding toward the app;
//     hpack.go: the RFC 7541 helpers it needs.
package proxy
