// Package keepalive is the per-connection keepalive, connection-age and
// ping-enforcement policy of the relay, as a pure state machine.
//
// It follows grpc-go's server transport (keepalive.ServerParameters,
// keepalive.EnforcementPolicy; gRFC A8 and A9) so that users meet the
// semantics they already know, with one deliberate difference: keepalive
// pings continue while the connection drains, because a client that dies
// during a long max-age grace or SIGTERM drain must still be reported.
//
// A Policy starts no goroutine, holds no timer or socket and never reads the
// clock: every method takes the current time. The relay calls the methods
// under its per-connection lock, executes the returned actions in order, and
// re-arms its single timer to Deadline after every call; when that timer
// fires it calls Tick.
//
//	acts := p.Tick(time.Now())
//	for _, a := range acts { execute(a) }
//	timer.Reset(time.Until(p.Deadline())) // unless Deadline is zero
//
// It must not start goroutines, read the clock or touch sockets, and it
// imports no gRPC: pkg/event is its only project dependency
// (TestPurePackagesImportNoRPC).
package keepalive
