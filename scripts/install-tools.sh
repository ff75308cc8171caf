#!/usr/bin/env bash
# install-tools.sh builds the pinned third-party tools that hangup's tests run
# (h2spec, grpc-go interop client/server, ghz, grpcurl, helm, buf,
# protoc-gen-go, protoc-gen-go-grpc, Jaeger, etcd, kube-apiserver, kubectl, and
# for scripts/cluster.sh's node kubelet, kube-controller-manager,
# kube-scheduler and kube-proxy) into ${HANGUP_CACHE:-$HOME/.cache/hangup}/bin.
#
# Usage: scripts/install-tools.sh [NAME...]   (no NAME: every tool)
#
# Everything is built from source at a pinned version so that a fresh CI
# machine gets exactly the binaries the tests were written against; a tool
# is skipped when its stamp file says it was already built from the same pin,
# so a warm cache costs seconds. Cache HANGUP_CACHE (and the Go build and
# module caches) between CI runs.
#
# Tools whose module has replace directives cannot be built with
# "go install pkg@version"; they are built inside a small wrapper module under
# tools/ (go.mod with a tool directive and the needed replaces, plus go.sum).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${HANGUP_CACHE:-$HOME/.cache/hangup}
bin=$cache/bin
stamps=$cache/stamps

# The local toolchain builds everything: no silent toolchain downloads.
export GOTOOLCHAIN=local
# Static binaries, no C compiler needed on the CI machine.
export CGO_ENABLED=0

# Kubernetes reports its version from these variables, as its release
# build sets them; without them kube-apiserver and kubectl call themselves
# v0.0.0-master, which version-skew checks and tests cannot reason about.
k8s_version=v1.37.2
k8s_build_date=2026-10-27T12:01:04Z # the tag's commit time, for reproducible builds
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version"
	k8s_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
	k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8s_build_date"
done

# Tool table, one tool a line:
#   name  kind  package  version-or-wrapper-dir  check-command-args
# kind "install": go install package@version.
# kind "wrap":    go build package inside the wrapper module tools/<dir>.
# The check arguments are run against the built binary, which must exit 0.
tools=(
	"h2spec              wrap    github.com/summerwind/h2spec/cmd/h2spec           h2spec --version"
	"grpc-interop-client install google.golang.org/grpc/interop/client             v1.85.0 --help"
	"grpc-interop-server install google.golang.org/grpc/interop/server             v1.85.0 --help"
	"ghz                 install github.com/bojand/ghz/cmd/ghz                     v0.121.0 --version"
	"grpcurl             install github.com/fullstorydev/grpcurl/cmd/grpcurl       v1.9.4 -version"
	"buf                 install github.com/bufbuild/buf/cmd/buf                   v1.75.0 --version"
	"protoc-gen-go       install google.golang.org/protobuf/cmd/protoc-gen-go      v1.36.12 --version"
	"protoc-gen-go-grpc  install google.golang.org/grpc/cmd/protoc-gen-go-grpc     v1.5.1 --version"
	"helm                install helm.sh/helm/v3/cmd/helm                          v3.22.0 version --short"
	"jaeger              wrap    github.com/jaegertracing/jaeger/cmd/jaeger        jaeger version"
	"etcd                wrap    go.etcd.io/etcd/server/v3                         etcd --version"
	"kube-apiserver      wrap    k8s.io/kubernetes/cmd/kube-apiserver              kubernetes --version"
	"kubectl             wrap    k8s.io/kubernetes/cmd/kubectl                     kubernetes version --client"
	"kubelet             wrap    k8s.io/kubernetes/cmd/kubelet                     kubernetes --version"
	"kube-controller-manager wrap k8s.io/kubernetes/cmd/kube-controller-manager    kubernetes --version"
	"kube-scheduler      wrap    k8s.io/kubernetes/cmd/kube-scheduler              kubernetes --version"
	"kube-proxy          wrap    k8s.io/kubernetes/cmd/kube-proxy                  kubernetes --version"
)

die() {
	echo "install-tools: $*" >&2
	exit 1
}

# ldflags_for NAME VERSION prints the linker flags a tool needs.
ldflags_for() {
	case $1 in
	kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) echo "-s -w $k8s_ldflags" ;;
	# h2spec's release builds stamp these; without them it calls itself 2.0.0.
	h2spec) echo "-s -w -X main.VERSION=2.2.1 -X main.COMMIT=v2.2.1" ;;
	# Their release builds set these too; without them they print "dev".
	ghz | grpcurl) echo "-s -w -X main.version=$2" ;;
	helm) echo "-s -w -X helm.sh/helm/v3/internal/version.version=$2" ;;
	# The version of the module pinned in tools/jaeger/go.mod.
	jaeger) echo "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v1.76.0" ;;
	*) echo "-s -w" ;;
	esac
}

# stamp_for prints what identifies one build of a tool: the pin, and for a
# wrapper module the hash of its go.mod and go.sum, so that editing a wrapper
# (say, bumping a replace) rebuilds the tool.
stamp_for() {
	local name=$1 kind=$2 pkg=$3 ver=$4
	case $kind in
	install) echo "$pkg@$ver ldflags=$(ldflags_for "$name" "$ver")" ;;
	wrap)
		local dir=$root/tools/$ver
		[[ -f $dir/go.mod && -f $dir/go.sum ]] || die "$name: wrapper module $dir has no go.mod/go.sum"
		echo "$pkg wrapper=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1) ldflags=$(ldflags_for "$name" "$ver")"
		;;
	esac
}

# build_one builds one tool into $bin/.new/name; the caller moves it in place
# only after it passed its check, so an interrupted build never leaves a
# half-written binary behind a valid stamp.
build_one() {
	local name=$1 kind=$2 pkg=$3 ver=$4 out=$5
	local ldflags
	ldflags=$(ldflags_for "$name" "$ver")
	case $kind in
	install)
		local gobin
		gobin=$(mktemp -d)
		# go install names the binary after the package's last element
		# (minus a /vN major suffix), not after our tool name.
		if ! GOBIN=$gobin go install -trimpath -ldflags="$ldflags" "$pkg@$ver"; then
			rm -rf "$gobin"
			die "$name: go install $pkg@$ver failed"
		fi
		local built=("$gobin"/*)
		[[ ${#built[@]} -eq 1 && -x ${built[0]} ]] || die "$name: expected one binary from go install $pkg@$ver, got: ${built[*]}"
		mv "${built[0]}" "$out"
		rm -rf "$gobin"
		;;
	wrap)
		# -mod=readonly: the committed go.mod/go.sum are the pin; a build that
		# would need to change them is an error, not a silent re-resolve.
		# -buildvcs=false: the wrapper sits in hangup's checkout, whose git
		# state says nothing about the tool (and may be unreadable in CI).
		(cd "$root/tools/$ver" && go build -mod=readonly -buildvcs=false -trimpath -ldflags="$ldflags" -o "$out" "$pkg") ||
			die "$name: go build $pkg in tools/$ver failed"
		;;
	*) die "$name: unknown kind $kind" ;;
	esac
}

# shell_pid is the shell whose children the builds are: this script's, or
# a lane's (build_lane runs in a subshell of its own).
shell_pid=$$

# cpu_seconds prints the CPU time (user + system, whole seconds) that the
# shell's finished children used so far: the builds' own cost, which does
# not grow when other work shares the cores, unlike their wall time.
cpu_seconds() {
	local f
	read -r -a f </proc/$shell_pid/stat
	echo $(((f[15] + f[16]) / $(getconf CLK_TCK)))
}

# check PATH ARGS... runs a built binary the way its check says and prints
# its output; it fails if the binary does not exit 0 within a minute.
check() {
	timeout 60 "$@" 2>&1
}

install_tool() {
	local name=$1 kind=$2 pkg=$3 ver=$4
	shift 4
	local start cpu stamp state="" out
	start=$(date +%s.%N)
	cpu=$(cpu_seconds)
	stamp=$(stamp_for "$name" "$kind" "$pkg" "$ver")
	if [[ -x $bin/$name && -f $stamps/$name && $(cat "$stamps/$name") == "$stamp" ]]; then
		if out=$(check "$bin/$name" "$@"); then
			state=cached
		else
			echo "install-tools: $name: the cached binary fails '$name $*'; rebuilding it" >&2
		fi
	fi
	if [[ -z $state ]]; then
		rm -f "$stamps/$name"
		mkdir -p "$bin/.new"
		build_one "$name" "$kind" "$pkg" "$ver" "$bin/.new/$name"
		if ! out=$(check "$bin/.new/$name" "$@"); then
			rm -f "$bin/.new/$name"
			die "$name: '$name $*' failed after building it: $out"
		fi
		mv -f "$bin/.new/$name" "$bin/$name"
		echo "$stamp" >"$stamps/$name"
		state=built
	fi
	local took first
	took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	# First non-empty line of the check output that is not a log line
	# (Jaeger logs before it prints its version), as a version hint.
	first=$(printf '%s\n' "$out" | sed -n '/^[0-9]\{4\}\/[0-9][0-9]\/[0-9][0-9] /d; /[^[:space:]]/{p;q}' | cut -c1-60)
	printf '%-23s %-6s %6ss  cpu %5ss  %s\n' "$name" "$state" "$took" "$(($(cpu_seconds) - cpu))" "$first"
}

# build_lane NAME... installs the named tools one after the other.
build_lane() {
	local name fields
	shell_pid=$BASHPID
	for name in "$@"; do
		read -r -a fields <<<"$(line_of "$name")"
		install_tool "${fields[@]}"
	done
}

# line_of NAME prints the tool table line of NAME, or fails.
line_of() {
	local line n
	for line in "${tools[@]}"; do
		read -r n _ <<<"$line"
		if [[ $n == "$1" ]]; then
			echo "$line"
			return 0
		fi
	done
	return 1
}

main() {
	command -v go >/dev/null || die "go is not on PATH"
	local want=("$@") line name names=()
	for line in "${tools[@]}"; do
		read -r name _ <<<"$line"
		names+=("$name")
	done
	[[ ${#want[@]} -gt 0 ]] || want=("${names[@]}")
	# Check every name before building anything: a typo should not cost a
	# five-minute build first.
	for name in "${want[@]}"; do
		line_of "$name" >/dev/null || die "unknown tool '$name'; known tools: ${names[*]}"
	done
	mkdir -p "$bin" "$stamps"
	local start=$SECONDS cpu
	cpu=$(cpu_seconds)
	# Two lanes side by side: Kubernetes' binaries, and the rest. A cold
	# kube-apiserver build keeps one core busy most of the time (953 CPU-s
	# in 1002 s on 2 cores, 3 December 2026: packages such as its 4 MB
	# generated OpenAPI file compile one at a time, and what imports them
	# waits), so the other tools' builds use the core it leaves idle.
	local k8s=() rest=() fields
	for name in "${want[@]}"; do
		read -r -a fields <<<"$(line_of "$name")"
		if [[ ${fields[3]} == kubernetes ]]; then k8s+=("$name"); else rest+=("$name"); fi
	done
	local lanes=() failed=0 pid
	if ((${#k8s[@]})); then
		build_lane "${k8s[@]}" &
		lanes+=($!)
	fi
	if ((${#rest[@]})); then
		build_lane "${rest[@]}" &
		lanes+=($!)
	fi
	for pid in "${lanes[@]}"; do
		wait "$pid" || failed=1
	done
	((failed == 0)) || die "a tool did not build (its error is above)"
	echo "install-tools: ${#want[@]} tools ready in $bin ($((SECONDS - start))s, cpu $(($(cpu_seconds) - cpu))s)"
}

# On one line with main so that bash, which reads a script as it runs it,
# never reads past it: editing this file during a run stays harmless.
main "$@"; exit $?
