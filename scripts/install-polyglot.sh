#!/usr/bin/env bash
# install-polyglot.sh installs the dependencies of the example apps in other
# languages and builds them, for test/polyglot (make test-polyglot).
#
# Usage: scripts/install-polyglot.sh [LANG...]   (no LANG: every language)
#   node        npm ci in examples/node (exact versions from package-lock.json)
#   python      a venv under the cache, pip install --require-hashes, and the
#               generated gRPC code in examples/python/gen (gitignored)
#   java        mvn package with its local repository under the cache; the
#               runnable jar is copied to the cache
#   rust-tonic  cargo build --release --locked, target dir under the cache
#   rust-volo   the same
#
# The clients of the interop matrix (test/polyglot/interop_test.go) come
# with their apps: examples/node/client.js and examples/python/client.py
# need nothing more, the java client is a second main class in the same jar
# (dev.hangup.example.Client) and the rust-tonic one a second binary of the
# same crate (hangup-example-tonic-client).
#
# Each language is skipped when the hash of its inputs (lock files, sources,
# protos, toolchain version) matches the stamp of its last build, so a warm
# run costs a second. The cache is ${HANGUP_CACHE:-$HOME/.cache/hangup}.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${HANGUP_CACHE:-$HOME/.cache/hangup}
stamps=$cache/stamps
mkdir -p "$stamps"

all=(node python java rust-tonic rust-volo)

# inputs_hash FILE-OR-DIR... prints one hash of the named files' contents
# (directories: every file under them, except build output) and of the
# extra text in $extra.
inputs_hash() {
	{
		printf '%s\n' "${extra:-}"
		find "$@" -type f \
			-not -path '*/node_modules/*' -not -path '*/target/*' \
			-not -path '*/gen/*' -not -path '*/__pycache__/*' -print0 |
			sort -z | xargs -0 sha256sum
	} | sha256sum | cut -d' ' -f1
}

# fresh NAME HASH OUT... succeeds when NAME was last built from inputs HASH
# and each of its outputs OUT (paths) still exists.
fresh() {
	local name=$1 hash=$2 out
	shift 2
	for out in "$@"; do
		[[ -e $out ]] || return 1
	done
	[[ "$(cat "$stamps/polyglot-$name" 2>/dev/null)" == "$hash" ]]
}

stamp() { echo "$2" >"$stamps/polyglot-$1"; }

need() {
	command -v "$1" >/dev/null || {
		echo "install-polyglot: $2 needs $1 on PATH" >&2
		exit 1
	}
}

install_node() {
	need node node
	need npm node
	local dir=$root/examples/node
	local extra
	extra="node $(node --version)"
	local hash
	hash=$(extra=$extra inputs_hash "$dir/package.json" "$dir/package-lock.json" "$dir/.npmrc")
	fresh node "$hash" "$dir/node_modules/@grpc/grpc-js" && return
	echo "install-polyglot: node: npm ci" >&2
	(cd "$dir" && npm ci --no-audit --no-fund --cache "$cache/npm")
	stamp node "$hash"
}

install_python() {
	need python3 python
	local dir=$root/examples/python venv=$cache/polyglot/python/venv
	local extra
	extra="python $(python3 --version 2>&1)"
	local hash
	hash=$(extra=$extra inputs_hash "$dir/requirements.txt" "$root/api/hangup/notify" "$root/examples/proto")
	fresh python "$hash" "$venv/bin/python" "$dir/gen/hangup/example/v1/subscription_pb2_grpc.py" && return
	echo "install-polyglot: python: venv, pip install --require-hashes, generate code" >&2
	rm -rf "$venv" "$dir/gen"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q --require-hashes --no-deps -r "$dir/requirements.txt"
	mkdir -p "$dir/gen"
	# grpc_tools.protoc adds its bundled well-known types (timestamp.proto).
	"$venv/bin/python" -m grpc_tools.protoc -I "$root/api" -I "$root/examples/proto" \
		--python_out="$dir/gen" --grpc_python_out="$dir/gen" \
		hangup/notify/v1/notify.proto hangup/example/v1/subscription.proto
	stamp python "$hash"
}

install_java() {
	need java java
	need mvn java
	local dir=$root/examples/java out=$cache/polyglot/java
	local classifier
	case $(uname -m) in
	x86_64) classifier=linux-x86_64 ;;
	aarch64) classifier=linux-aarch_64 ;;
	*)
		echo "install-polyglot: java: no protoc artifact for $(uname -m)" >&2
		exit 1
		;;
	esac
	local extra
	# sed, not head: head exits after one line and the writer's SIGPIPE
	# fails the pipeline (pipefail), which stopped the script at random.
	extra="$(java -version 2>&1 | sed -n 1p) $(mvn -v 2>/dev/null | sed -n 1p) $classifier"
	local hash
	hash=$(extra=$extra inputs_hash "$dir/pom.xml" "$dir/src" "$root/api/hangup/notify" "$root/examples/proto")
	fresh java "$hash" "$out/hangup-example-java.jar" && return
	echo "install-polyglot: java: mvn package" >&2
	(cd "$dir" && mvn -q -B -Dstyle.color=never package -DskipTests \
		-Dmaven.repo.local="$cache/m2" -Dos.detected.classifier="$classifier")
	mkdir -p "$out"
	cp "$dir/target/hangup-example-java.jar" "$out/hangup-example-java.jar"
	stamp java "$hash"
}

# crates_index prints the source id cargo gives its default registry, by
# asking cargo itself about a one-dependency crate: the committed lock
# files hold a placeholder instead, so that no registry is named in the
# repository.
crates_index() {
	local probe=$cache/rust/index-probe
	if [ ! -s "$probe/source-id" ]; then
		mkdir -p "$probe/src"
		printf '[package]\nname = "probe"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nitoa = "=1.0.15"\n' >"$probe/Cargo.toml"
		: >"$probe/src/lib.rs"
		(cd "$probe" && cargo generate-lockfile -q)
		grep -m1 -o 'registry+[^"]*' "$probe/Cargo.lock" >"$probe/source-id"
	fi
	cat "$probe/source-id"
}

# install_rust NAME builds examples/rust-NAME. Both crates share one target
# directory so that the crates they have in common are built once. Its
# Cargo.lock is made from the committed Cargo.lock.pinned.
install_rust() {
	local name=$1
	need cargo "rust-$name"
	local dir=$root/examples/rust-$name target=$cache/rust/target
	local index
	index=$(crates_index)
	sed "s#registry+CRATES_IO_INDEX#$index#" "$dir/Cargo.lock.pinned" >"$dir/Cargo.lock"
	local extra
	extra="$(rustc --version) $(cargo --version)"
	local hash
	hash=$(extra=$extra inputs_hash "$dir/Cargo.toml" "$dir/Cargo.lock.pinned" "$dir/build.rs" "$dir/src" \
		"$root/api/hangup/notify" "$root/examples/proto")
	local outs=("$target/release/hangup-example-$name")
	# rust-tonic also has the interop matrix's client binary.
	[[ $name != tonic ]] || outs+=("$target/release/hangup-example-tonic-client")
	fresh "rust-$name" "$hash" "${outs[@]}" && return
	echo "install-polyglot: rust-$name: cargo build --release --locked" >&2
	# Two jobs: the machines this runs on have two cores, shared.
	(cd "$dir" && CARGO_TARGET_DIR=$target cargo build --release --locked --jobs 2)
	stamp "rust-$name" "$hash"
}

# cpu_seconds prints the CPU time (user + system, whole seconds) that this
# script's finished children used so far; unlike the wall time it does not
# grow when other work shares the cores.
cpu_seconds() {
	local f
	read -r -a f </proc/$$/stat
	echo $(((f[15] + f[16]) / $(getconf CLK_TCK)))
}

build() {
	local lang=$1 start=$SECONDS cpu
	cpu=$(cpu_seconds)
	case $lang in
	node) install_node ;;
	python) install_python ;;
	java) install_java ;;
	rust-tonic) install_rust tonic ;;
	rust-volo) install_rust volo ;;
	*)
		echo "install-polyglot: unknown language $lang; want one of: ${all[*]}" >&2
		exit 2
		;;
	esac
	echo "install-polyglot: $lang ready ($((SECONDS - start))s, cpu $(($(cpu_seconds) - cpu))s)" >&2
}

langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=("${all[@]}")
for lang in "${langs[@]}"; do
	build "$lang"
done
