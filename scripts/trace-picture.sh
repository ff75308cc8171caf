#!/usr/bin/env bash
# trace-picture.sh draws a disconnect trace as the user sees it: it starts a
# local Jaeger v2 (in-memory, every port on 127.0.0.1), runs the demo
# (`sidecar demo --jaeger`) against it, finds the stream span of the demo's
# disconnect by its hangup.disconnect.reason tag, and renders that trace
# with tools/waterfall. Jaeger is stopped on exit.
#
# Usage: scripts/trace-picture.sh [--keep] [OUT]   (default docs/img/disconnect-trace.png)
#
#   --keep   leave Jaeger running afterwards, until Ctrl-C, to query its
#            API (/api/traces) or draw other traces with tools/waterfall;
#            this Jaeger build has no web UI (docs/jaeger.md says where to
#            get one)
#   REASON   environment variable: the disconnect to draw, RST_STREAM by
#            default (or GOAWAY, CONNECTION_CLOSED, CONNECTION_RESET,
#            PROTOCOL_ERROR: the demo makes each of them)
#
# Needs Go, curl and the jaeger binary from scripts/install-tools.sh jaeger
# in ${HANGUP_CACHE:-$HOME/.cache/hangup}/bin. The Jaeger config is the one
# internal/jaegertest uses in the tests, written by tools/jaeger-config.
# Without --keep it ends by itself: Jaeger gets 30 s to start, the demo
# 120 s, the search 20 s.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=false
if [[ ${1:-} == --keep ]]; then
	keep=true
	shift
fi
out=${1:-$root/docs/img/disconnect-trace.png}
reason=${REASON:-RST_STREAM}
service=hangup-demo
jaeger=${HANGUP_CACHE:-$HOME/.cache/hangup}/bin/jaeger
if [[ ! -x $jaeger ]]; then
	echo "trace-picture: $jaeger missing: run scripts/install-tools.sh jaeger" >&2
	exit 1
fi

tmp=$(mktemp -d)
jaeger_pid=
cleanup() {
	if [[ -n $jaeger_pid ]]; then
		kill "$jaeger_pid" 2>/dev/null || true
		wait "$jaeger_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$root"
echo "trace-picture: building the sidecar and the tools" >&2
go build -o "$tmp/" ./cmd/sidecar ./tools/waterfall ./tools/jaeger-config

# Free 127.0.0.1 ports, so that a Jaeger already running on 16686/4318 is
# left alone. The script evals only the four PORT=number lines it prints.
eval "$("$tmp/jaeger-config" -free -o "$tmp/jaeger.yaml" | grep -E '^JAEGER_[A-Z_]+_PORT=[0-9]+$')"
query=http://127.0.0.1:$JAEGER_QUERY_PORT
otlp=http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT

"$jaeger" --config "file:$tmp/jaeger.yaml" >"$tmp/jaeger.log" 2>&1 &
jaeger_pid=$!
ready=false
for _ in $(seq 150); do # 30 s
	if ! kill -0 "$jaeger_pid" 2>/dev/null; then
		break
	fi
	if curl -fs -o /dev/null --max-time 1 "$query/api/services" &&
		curl -s -o /dev/null --max-time 1 "$otlp"; then
		ready=true
		break
	fi
	sleep 0.2
done
if [[ $ready != true ]]; then
	echo "trace-picture: Jaeger did not come up on $query; its log:" >&2
	tail -n 30 "$tmp/jaeger.log" >&2
	exit 1
fi
echo "trace-picture: Jaeger on $query (OTLP/HTTP $otlp)" >&2

timeout 120 "$tmp/sidecar" demo --jaeger "$otlp"

mkdir -p "$(dirname "$out")"
"$tmp/waterfall" -jaeger "$query" -service "$service" \
	-tag "hangup.disconnect.reason=$reason" -wait 20s -o "$out"

if [[ $keep == true ]]; then
	echo "trace-picture: Jaeger query API on $query/api/traces?service=$service; Ctrl-C stops it" >&2
	wait "$jaeger_pid" || true
fi
