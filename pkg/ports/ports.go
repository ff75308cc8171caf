// Package ports declares the sidecar's default ports, once, and the ports
// that service meshes and other sidecars reserve in the same pod, so that a
// test can keep the two apart.
//
// It imports nothing: the proxy's flags, the injector, the redirect rules
// and (through a test) the chart, the Dockerfile and the docs take their
// defaults from here.
package ports

const (
	// Proxy is the sidecar's inbound listener: clients connect to it in
	// port mode, and the redirect rule sends the app port's connections to
	// it in redirect mode. Istio's inbound capture port is 15006, so ours
	// sits outside Istio's whole 15000–15090 block.
	Proxy = 16006
	// Admin serves /healthz, /readyz and /metrics. Istio's agent uses 15020.
	Admin = 16020
	// Notify is where the app's DisconnectNotify service listens, on
	// loopback: the app opens it, so it is only a default the app and the
	// sidecar agree on. 15091 is just above Istio's reserved block and used
	// by none of the meshes below.
	Notify = 15091
	// Watch is where the sidecar serves DisconnectWatch.Watch to the app
	// when pull mode is on (--watch-addr), on loopback: the next port after
	// Notify, outside every reserved block below.
	Watch = 15092
	// Webhook is the injector's HTTPS port inside its own pod (never in an
	// app's pod).
	Webhook = 8443
)

// Range is a block of ports [First, Last] that someone else uses.
type Range struct {
	First, Last int
	// Owner names who uses it and why it must stay free in an app's pod.
	Owner string
}

// Contains reports whether port lies in r.
func (r Range) Contains(port int) bool { return r.First <= port && port <= r.Last }

// Reserved lists the ports that other proxies, meshes and the commonest
// apps take inside a pod. The sidecar's defaults (Proxy, Admin, Notify, Watch)
// must fall in none of them; ports_test.go checks it.
var Reserved = []Range{
	{15000, 15090, "Istio: Envoy admin 15000, outbound 15001, inbound capture 15006, HBONE 15008, agent 15020, health 15021, DNS 15053, Prometheus 15090 (the whole block is reserved)"},
	{4140, 4140, "Linkerd proxy outbound"},
	{4143, 4143, "Linkerd proxy inbound"},
	{4190, 4191, "Linkerd proxy-init and proxy admin"},
	{3500, 3501, "Dapr sidecar HTTP API"},
	{50001, 50002, "Dapr sidecar gRPC API and internal gRPC"},
	{19000, 19000, "Consul Connect Envoy admin"},
	{20000, 20000, "Consul Connect sidecar public listener"},
	{21000, 21255, "Consul Connect sidecar service range"},
	{9901, 9901, "Envoy's default admin port"},
	{80, 80, "HTTP apps"},
	{443, 443, "HTTPS apps"},
	{8080, 8080, "HTTP apps and probes"},
	{8443, 8443, "HTTPS apps"},
	{9090, 9091, "Prometheus, gRPC apps and Dapr metrics"},
	{50051, 50051, "the gRPC examples' app port"},
	{32768, 60999, "Linux's ephemeral range: a listener here can lose its port to an outgoing connection"},
}
