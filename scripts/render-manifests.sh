#!/usr/bin/env bash
# render-manifests.sh renders the hangup chart with its default values into
# plain YAML for `kubectl apply` users: deploy/manifests/hangup.yaml.
#
# Usage: scripts/render-manifests.sh [OUT]   (default deploy/manifests/hangup.yaml)
#
# Uses the pinned helm from ${HANGUP_CACHE:-$HOME/.cache/hangup}/bin
# (scripts/install-tools.sh helm). test/deploy checks that the committed
# file equals a fresh render.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helm=${HANGUP_CACHE:-$HOME/.cache/hangup}/bin/helm
out=${1:-$root/deploy/manifests/hangup.yaml}
if [[ ! -x $helm ]]; then
	echo "render-manifests: $helm missing: run scripts/install-tools.sh helm" >&2
	exit 1
fi

namespace=hangup
# The Kubernetes version the chart is tested against (test/k8s); a helm
# built with go install would otherwise assume v1.20.0.
kube_version=v1.37.2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# Rendered from deploy/helm/hangup by scripts/render-manifests.sh; do not edit."
	echo "# Install: kubectl apply -f deploy/manifests/hangup.yaml"
	echo "---"
	echo "apiVersion: v1"
	echo "kind: Namespace"
	echo "metadata:"
	echo "  name: $namespace"
	"$helm" template hangup "$root/deploy/helm/hangup" --namespace "$namespace" --kube-version "$kube_version"
} >"$tmp"
mv "$tmp" "$out"
trap - EXIT
