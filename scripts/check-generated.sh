#!/usr/bin/env bash
# check-generated.sh regenerates the protobuf Go code into the tree and fails
# when it differs from what is committed: someone changed a .proto without
# running scripts/gen-proto.sh, or edited generated code by hand.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/gen-proto.sh"

cd "$root"
dirs=(api/)
[[ -d examples/go/proto ]] && dirs+=(examples/go/proto/)
if ! git diff --exit-code -- "${dirs[@]}"; then
	echo >&2
	echo "check-generated: generated code under ${dirs[*]} is out of date with its .proto files." >&2
	echo "check-generated: run scripts/gen-proto.sh and commit the result." >&2
	exit 1
fi
untracked=$(git ls-files --others --exclude-standard -- "${dirs[@]}")
if [[ -n $untracked ]]; then
	echo "check-generated: generated files are not committed:" >&2
	echo "$untracked" >&2
	echo "check-generated: run scripts/gen-proto.sh and commit the result." >&2
	exit 1
fi
echo "check-generated: generated code is up to date"
