# hangup — common tasks. `make test` is what CI runs (through .ci/run).
GO      ?= go
export HANGUP_CACHE ?= $(HOME)/.cache/hangup
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Test tools the Go tests run (built once into $(HANGUP_CACHE)/bin; all of
# them by default: h2spec, grpc interop, Jaeger, etcd, kube-apiserver, ...).
TEST_TOOLS ?=
# How long each fuzz target runs in `make fuzz`: a count of inputs (Nx) or
# a duration. A count by default: with a duration, Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded", with no failing
# input, when the deadline ends a worker's run (golang/go#75804, fixed in
# Go 1.27); a count has no deadline to race.
FUZZTIME ?= 20000x

.PHONY: all build test test-go test-portable test-polyglot tools examples debs demo bench lint fuzz generate check-generated clean

all: build

## build: bin/sidecar, every subcommand (the hangup-tools image: the
## webhook, demo, notify-check), and bin/pod/sidecar, only what runs in the
## app's pod (the hangup image: -tags hangup_pod, under 20 MB).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/sidecar ./cmd/sidecar
	CGO_ENABLED=0 $(GO) build -tags hangup_pod -ldflags "$(LDFLAGS)" -o bin/pod/sidecar ./cmd/sidecar

## tools: build the pinned test tools into the cache (seconds when warm).
tools:
	scripts/install-tools.sh $(TEST_TOOLS)

## debs: the Debian packages the tests use (network namespaces, peers).
debs:
	scripts/install-debs.sh

## examples: build the example apps of every language (for test/polyglot).
examples:
	scripts/install-polyglot.sh

## test: every test, with the race detector, against real peers (the
## polyglot suite included, so its apps are built first).
test: tools examples test-go test-portable

test-go:
	$(GO) test -race -count=1 -timeout 30m ./...
	$(GO) test -race -count=1 -tags hangup_pod ./cmd/sidecar

## test-portable: the relay and the demo with the fallback that macOS and
## Windows use (no epoll parking), forced on Linux by a build tag.
test-portable:
	$(GO) test -race -count=1 -tags hangup_portable ./internal/park ./pkg/proxy ./cmd/sidecar

## test-polyglot: the example apps of every language behind the sidecar
## (installs each language's dependencies first; seconds when warm).
test-polyglot: examples
	$(GO) test -race -count=1 ./test/polyglot/...

## test-cluster: the user's path on a real one-node Kubernetes started by
## scripts/cluster.sh (root; builds the node's tools and images first, then
## helm install, an injected app behind a Service, every disconnect; the
## node is stopped and checked clean at the end).
.PHONY: test-cluster
# The test stops the node itself; the down after it covers a test binary
# killed by its timeout.
test-cluster:
	HANGUP_CLUSTER=1 $(GO) test -race -count=1 -timeout 20m -v ./test/cluster/; \
	status=$$?; scripts/cluster.sh down >/dev/null 2>&1; scripts/cluster.sh check || status=1; exit $$status

## demo-cluster: the same node, chart, Jaeger and injected example as
## test-cluster, left running, with the commands to poke at it printed.
.PHONY: demo-cluster
demo-cluster:
	HANGUP_CLUSTER=1 HANGUP_CLUSTER_KEEP=1 $(GO) test -v -count=1 -timeout 20m -run TestCluster ./test/cluster/

## demo: a demo app, the sidecar and clients that disconnect in every way.
demo:
	$(GO) run ./cmd/sidecar demo

## bench: the relay against direct calls, in one run, with ratios.
BENCH_N ?= 3000
bench:
	$(GO) test -run '^$$' -bench 'Unary|Streaming|Forward|Tracing|ConnChurn' -benchtime $(BENCH_N)x ./test/bench ./pkg/proxy
	$(GO) test -run '^$$' -bench 'Detect|NotifyLatency' -benchtime $$(( $(BENCH_N) / 10 + 1 ))x ./test/bench
	$(GO) test -run '^$$' -bench 'NotifyBurst' -benchtime 1x ./test/bench

## bench-compare: hangup against haproxy, nginx, nghttpx, a splice TCP relay
## and direct calls, in one run (about 10 minutes); writes docs/BENCHMARKS.md
## and its charts. `go test ./bench/harness` runs its shortest mode.
.PHONY: bench-compare soak
BENCH_COMPARE_FLAGS ?=
bench-compare:
	$(GO) run ./bench/compare -out docs $(BENCH_COMPARE_FLAGS)

## soak: connections open and die in every way at a steady rate against the
## built sidecar; checks one event per disconnect and no leaks at the end.
SOAK_DURATION ?= 10m
soak:
	$(GO) run ./bench/soak -duration $(SOAK_DURATION) $(SOAK_FLAGS)

## fuzz: each fuzz target for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## lint: formatting, vet (for Linux, and for macOS and Windows so that
## developers there can build and run the demo), and generated code up to date.
lint: check-generated
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags hangup_pod ./cmd/sidecar
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

generate:
	scripts/gen-proto.sh

check-generated:
	scripts/check-generated.sh

clean:
	rm -rf bin
