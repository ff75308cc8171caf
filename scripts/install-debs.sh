#!/usr/bin/env bash
# install-debs.sh installs the Debian packages hangup's tests run (proxies
# to compare with, HTTP/2 clients, packet filtering for redirect mode, protoc,
# and the container runtime of scripts/cluster.sh), each only when it is
# missing, so a warm machine costs one dpkg query per package and no network.
#
# Usage: scripts/install-debs.sh   (as root, or with sudo on PATH)
set -euo pipefail

packages=(
	haproxy
	nginx
	nghttp2-proxy  # nghttpx
	nghttp2-client # nghttp, h2load
	iptables
	nftables
	iproute2
	protobuf-compiler
	curl
	# scripts/cluster.sh's one-node Kubernetes (make test-cluster): the
	# container runtime, the pod network plugins, and its certificates.
	containerd
	runc
	containernetworking-plugins
	openssl
)

export DEBIAN_FRONTEND=noninteractive

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || {
		echo "install-debs: not root and no sudo; run as root" >&2
		exit 1
	}
	sudo=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

# installed NAME succeeds when dpkg has NAME fully installed (a package that
# was removed but kept its configuration is not).
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-debs: all ${#packages[@]} packages already installed"
	exit 0
fi

echo "install-debs: installing ${missing[*]}"
# Installing haproxy or nginx must not start them (they would hold port 80
# on the test machine): a policy-rc.d that denies every start does that,
# unless the machine already has its own policy.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get update -q
# No recommends: the tests need the binaries, not the suggested extras.
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
	installed "$p" || {
		echo "install-debs: $p is still not installed after apt-get install" >&2
		exit 1
	}
done
echo "install-debs: installed ${missing[*]}"
