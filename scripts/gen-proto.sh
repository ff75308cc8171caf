#!/usr/bin/env bash
# gen-proto.sh builds the pinned code generators (scripts/install-tools.sh)
# if they are missing and regenerates the Go code for every .proto under
# api/ and examples/go/proto.
#
# Generated code is committed; CI checks it is current with check-generated.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${HANGUP_CACHE:-$HOME/.cache/hangup}/bin

# install-tools.sh owns the generators' pins and builds them once; a
# separate "go install" here would build buf a second time (its cache
# keys differ without -trimpath), minutes on a cold machine.
"$root/scripts/install-tools.sh" buf protoc-gen-go protoc-gen-go-grpc >/dev/null

# buf runs the plugins by name (local plugins in buf.gen.yaml), so they must
# be found on PATH first, before any other version the user has installed.
export PATH=$bin:$PATH

cd "$root"
buf lint
buf generate
