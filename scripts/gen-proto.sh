#!/usr/bin/env bash
# gen-proto.sh installs the pinned code generators into the hangup tool cache
# and regenerates the Go code for every .proto under api/ and examples/go/proto.
#
# Generated code is committed; CI checks it is current with check-generated.sh.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${HANGUP_CACHE:-$HOME/.cache/hangup}/bin
mkdir -p "$bin"

# install NAME PKG VERSION installs PKG@VERSION into $bin unless a binary of
# that version is already there. The version is recorded in NAME.version
# because not every tool reports its own version the same way.
install() {
	local name=$1 pkg=$2 version=$3
	if [[ -x $bin/$name && "$(cat "$bin/$name.version" 2>/dev/null)" == "$version" ]]; then
		return
	fi
	echo "installing $pkg@$version into $bin" >&2
	GOBIN=$bin go install "$pkg@$version"
	echo "$version" >"$bin/$name.version"
}

install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

# buf runs the plugins by name (local plugins in buf.gen.yaml), so they must
# be found on PATH first, before any other version the user has installed.
export PATH=$bin:$PATH

cd "$root"
buf lint
buf generate
