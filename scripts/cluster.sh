#!/usr/bin/env bash
# cluster.sh runs a real one-node Kubernetes v1.37.2 on this machine, inside
# its own network namespace, for `make test-cluster` and `make demo-cluster`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy (built by scripts/install-tools.sh), Debian's containerd, runc
# and CNI plugins (scripts/install-debs.sh), and images built from Go by
# tools/image, imported into containerd (pods use imagePullPolicy: Never; no
# registry is needed).
#
# Usage (as root):
#   scripts/cluster.sh up        start the node (builds what is missing), wait until Ready
#   scripts/cluster.sh down      stop everything and remove what up created
#   scripts/cluster.sh check     list what up left on the machine; exit 1 if anything
#   scripts/cluster.sh images    rebuild the images and import them into the running node
#   scripts/cluster.sh kubectl ARGS...   kubectl against the node
#   scripts/cluster.sh helm ARGS...      helm against the node
#   scripts/cluster.sh exec CMD...       run CMD in the node's network namespace
#
# Addresses are documentation ranges only: the node is 198.51.100.129/25 on
# a veth pair whose both ends stay in the namespace, pods get
# 198.51.100.0/25 (bridge cni0, host-local IPAM), Services 203.0.113.0/24.
# Nothing listens outside the namespace. The processes stay in the host's
# mount namespace and only join the network namespace (nsenter --net, not
# `ip netns exec`, which remounts /sys and hides the cgroup mounts).
#
# State lives in $HANGUP_CLUSTER_DIR (default /tmp/hangup-cluster): logs in
# logs/, PIDs in pids/, the kubeconfig in pki/kubeconfig. `down` also puts
# back the sysctls kubelet changes globally and removes the host paths that
# kubelet and containerd create whatever their configuration says.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${HANGUP_CACHE:-$HOME/.cache/hangup}
bin=$cache/bin
dir=${HANGUP_CLUSTER_DIR:-/tmp/hangup-cluster}
ns=hangup-node
nsf=/run/netns/$ns
node=hangup-node
node_ip=198.51.100.129
pod_cidr=198.51.100.0/25
pod_gw=198.51.100.1
svc_cidr=203.0.113.0/24
svc_api=203.0.113.1 # the kubernetes Service: the first address of svc_cidr
# How long up waits for each component, in seconds.
wait_s=${HANGUP_CLUSTER_WAIT:-120}

# The tools up runs or puts in an image, all from scripts/install-tools.sh.
k8s_tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl helm jaeger)
# The images the node has; tools/image builds them.
images=(pause hangup hangup-tools example-go example-go-client example-volo jaeger)
# The sysctls kubelet sets for the whole machine (setupKernelTunables:
# kernel.panic=10, panic_on_oops=1, vm.overcommit_memory=1, panic_on_oom=0,
# and the root key quotas); up saves them, down restores them.
sysctls=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths kubelet, containerd 1.6 and libcni write to whatever their
# configuration says; down removes those that did not exist before up.
host_paths=(/var/lib/kubelet /var/log/containers /var/lib/cni /run/containerd)
# Cgroups kubelet (kubepods) and containerd (k8s.io) create in each hierarchy.
cgroup_tops=(kubepods k8s.io)

die() {
	echo "cluster: $*" >&2
	exit 1
}

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }
say() { printf 'cluster: %-7s %s\n' "$(elapsed)" "$*"; }

inns() { nsenter --net="$nsf" -- "$@"; }
kc() { inns "$bin/kubectl" --kubeconfig="$dir/pki/kubeconfig" "$@"; }

# wait_for WHAT CMD... runs CMD until it succeeds, for at most wait_s
# seconds; on timeout it names WHAT and the log to read.
wait_for() {
	local what=$1 log=$2
	shift 2
	local deadline=$((SECONDS + wait_s))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "cluster: timed out after ${wait_s}s waiting for $what; last lines of $log:" >&2
			tail -n 30 "$log" >&2 || true
			return 1
		fi
		sleep 0.2
	done
	say "$what"
}

# start NAME CMD... runs CMD in the namespace, in its own session (so that a
# Ctrl-C of the caller does not reach it; down ends it), output in
# logs/NAME.log, PID in pids/NAME.pid.
start() {
	local name=$1
	shift
	setsid nsenter --net="$nsf" -- sh -c 'echo $$ >"$0"; exec "$@"' "$dir/pids/$name.pid" "$@" \
		>"$dir/logs/$name.log" 2>&1 </dev/null &
	local deadline=$((SECONDS + 10))
	until [[ -s $dir/pids/$name.pid ]]; do
		((SECONDS < deadline)) || die "$name did not start; see $dir/logs/$name.log"
		sleep 0.05
	done
}

node_ready() {
	[[ $(kc get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

running() {
	local f=$dir/pids/$1.pid
	[[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

pki() {
	local d=$dir/pki
	[[ -f $d/kubeconfig ]] && return 0
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=hangup-node-ca 2>/dev/null
		printf '[ext]\nsubjectAltName=IP:127.0.0.1,IP:%s,IP:%s,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
			"$node_ip" "$svc_api" >server.cnf
		openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
		openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile server.cnf -extensions ext 2>/dev/null
		printf '[ext]\nextendedKeyUsage=clientAuth\n' >client.cnf
		openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj /O=system:masters/CN=admin 2>/dev/null
		openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 30 -extfile client.cnf -extensions ext 2>/dev/null
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		cat >kubeconfig.tmp <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hangup-node
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: $(base64 -w0 ca.crt)}
users:
- name: admin
  user: {client-certificate-data: $(base64 -w0 admin.crt), client-key-data: $(base64 -w0 admin.key)}
contexts:
- name: hangup-node
  context: {cluster: hangup-node, user: admin}
current-context: hangup-node
EOF
		mv kubeconfig.tmp kubeconfig
	)
}

configs() {
	local c=$dir/conf
	mkdir -p "$c/cni"
	cat >"$c/containerd.toml" <<EOF
version = 2
root = "$dir/data/containerd/root"
state = "$dir/data/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$dir/run/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/data/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:cluster"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (some VMs withhold it) runc cannot give the
  # sandbox a negative oom_score_adj; clamp it to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/data/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$c/cni"
    max_conf_num = 1
EOF
	cat >"$c/cni/10-hangup.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hangup-node",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {
      "type": "host-local", "dataDir": "$dir/data/cni-ipam",
      "ranges": [[{"subnet": "$pod_cidr", "gateway": "$pod_gw"}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
EOF
	# No cluster DNS: pods resolve nothing, and the tests use Service IPs.
	echo "nameserver 203.0.113.10" >"$c/resolv.conf"
	cat >"$c/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/run/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
address: $node_ip
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: $dir/data/pod-logs
resolvConf: $c/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
EOF
}

# build_images writes the image tarballs into the cache (seconds when the Go
# build cache is warm; the digests are reproducible).
build_images() {
	(cd "$root" && go run ./tools/image -out "$cache/images" "${images[@]}") | sed 's/^/cluster: image /'
}

import_images() {
	local i
	for i in "${images[@]}"; do
		inns ctr --address "$dir/run/containerd.sock" -n k8s.io images import "$cache/images/$i.tar" >/dev/null ||
			die "import of $cache/images/$i.tar into containerd failed"
	done
	say "images imported: ${images[*]}"
}

cmd_up() {
	[[ $(id -u) -eq 0 ]] || die "up needs root (network namespace, containerd, kubelet)"
	running kube-apiserver && die "already up (state in $dir); run '$0 down' first"
	local t
	for t in containerd runc ctr nsenter setsid ip openssl /usr/lib/cni/bridge; do
		command -v "$t" >/dev/null || die "$t is missing: run scripts/install-debs.sh"
	done
	"$root/scripts/install-tools.sh" "${k8s_tools[@]}" | sed 's/^/cluster: /'
	build_images
	mkdir -p "$dir"/{logs,pids,run,data/etcd,data/pod-logs,data/kubelet}
	pki
	configs
	if [[ ! -f $dir/preexisting ]]; then
		: >"$dir/preexisting.tmp"
		local p
		for p in "${host_paths[@]}"; do
			[[ -e $p ]] && echo "$p" >>"$dir/preexisting.tmp"
		done
		for p in "${cgroup_tops[@]}"; do
			[[ -e /sys/fs/cgroup/cpu/$p ]] && echo "cgroup:$p" >>"$dir/preexisting.tmp"
		done
		mv "$dir/preexisting.tmp" "$dir/preexisting"
	fi
	# A sysctl.orig still here is from an up that was never downed: it
	# holds the values from before that one.
	[[ -f $dir/sysctl.orig ]] || sysctl "${sysctls[@]}" >"$dir/sysctl.orig"

	if [[ ! -e $nsf ]]; then
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		# A veth pair with both ends in the namespace carries the node
		# address and the default route (some kernels have no dummy driver).
		ip -n "$ns" link add node0 type veth peer name node0p
		ip -n "$ns" addr add "$node_ip/25" dev node0
		ip -n "$ns" link set node0p up
		ip -n "$ns" link set node0 up
		ip -n "$ns" route add default dev node0
		inns sysctl -qw net.ipv4.ip_forward=1
	fi
	say "namespace $ns ($node_ip)"

	start containerd containerd --config "$dir/conf/containerd.toml"
	start etcd "$bin/etcd" --name=hangup-node --data-dir="$dir/data/etcd" \
		--listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
		--listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
		--initial-cluster=hangup-node=http://127.0.0.1:2380 --unsafe-no-fsync --log-level=warn
	wait_for "containerd up" "$dir/logs/containerd.log" inns ctr --address "$dir/run/containerd.sock" version
	import_images
	wait_for "etcd healthy" "$dir/logs/etcd.log" inns curl -sf http://127.0.0.1:2379/health
	local p=$dir/pki
	# --kubelet-preferred-address-types=InternalIP: the node's name does not
	# resolve from inside the namespace.
	start kube-apiserver "$bin/kube-apiserver" --bind-address=0.0.0.0 --advertise-address="$node_ip" \
		--secure-port=6443 --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
		--client-ca-file="$p/ca.crt" --etcd-servers=http://127.0.0.1:2379 \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
		--service-cluster-ip-range="$svc_cidr" --authorization-mode=Node,RBAC \
		--kubelet-client-certificate="$p/admin.crt" --kubelet-client-key="$p/admin.key" \
		--enable-priority-and-fairness=false --allow-privileged=true \
		--kubelet-preferred-address-types=InternalIP
	wait_for "kube-apiserver ready" "$dir/logs/kube-apiserver.log" \
		inns curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" https://127.0.0.1:6443/readyz
	start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$p/kubeconfig" \
		--authentication-kubeconfig="$p/kubeconfig" --authorization-kubeconfig="$p/kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --allocate-node-cidrs=false \
		--service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
		--service-cluster-ip-range="$svc_cidr" --use-service-account-credentials=false
	start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$p/kubeconfig" \
		--authentication-kubeconfig="$p/kubeconfig" --authorization-kubeconfig="$p/kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false
	start kubelet "$bin/kubelet" --config="$dir/conf/kubelet.yaml" --kubeconfig="$p/kubeconfig" \
		--root-dir="$dir/data/kubelet" --cert-dir="$dir/data/kubelet/pki" \
		--hostname-override="$node" --node-ip="$node_ip"
	# kube-proxy in iptables mode for ClusterIP Services. Conntrack sizing is
	# global (read-only outside the initial namespace): leave it alone.
	inns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
	start kube-proxy "$bin/kube-proxy" --kubeconfig="$p/kubeconfig" --hostname-override="$node" \
		--proxy-mode=iptables --cluster-cidr="$pod_cidr" \
		--metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 \
		--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
	wait_for "node registered" "$dir/logs/kubelet.log" kc get node "$node"
	wait_for "node Ready" "$dir/logs/kubelet.log" node_ready
	wait_for "default service account" "$dir/logs/kube-controller-manager.log" kc get serviceaccount default
	wait_for "kubernetes Service through kube-proxy" "$dir/logs/kube-proxy.log" \
		inns curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "https://$svc_api/readyz"
	say "up; kubeconfig $dir/pki/kubeconfig (use: $0 kubectl ...)"
}

# stop NAME ends a process up started: SIGTERM, then SIGKILL after 5 s.
stop() {
	local f=$dir/pids/$1.pid pid i
	[[ -s $f ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

cmd_down() {
	[[ $(id -u) -eq 0 ]] || die "down needs root"
	local start=$SECONDS
	stop kubelet
	# The pods' containers outlive kubelet: stop their shims, which take
	# their containers with them. A shim names its containerd socket.
	stop kube-proxy
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver
	stop etcd
	stop containerd
	local p pids=()
	for p in /proc/[0-9]*; do
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "containerd-shim.* -address $dir/run/containerd.sock"; then
			pids+=("${p#/proc/}")
		fi
	done
	if ((${#pids[@]})); then
		# SIGKILL to a shim leaves its container running: kill the
		# processes of every container cgroup first, then the shims.
		find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		kill -9 "${pids[@]}" 2>/dev/null || true
	fi
	# Mounts under the state directory (rootfs overlays, the pods' netns,
	# volumes), deepest first.
	local m
	awk -v s="$dir/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	local top sub d
	for top in "${cgroup_tops[@]}"; do
		grep -qx "cgroup:$top" "$dir/preexisting" 2>/dev/null && continue
		for sub in /sys/fs/cgroup/*/; do
			d=$sub$top
			[[ -d $d ]] || continue
			# rmdir only: a cgroup with a process left in it stays, and
			# check reports it.
			find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		done
	done
	ip netns del "$ns" 2>/dev/null || true
	if [[ -f $dir/sysctl.orig ]]; then
		# Kept as sysctl.restored, for check.
		sed 's/ //g' "$dir/sysctl.orig" | xargs sysctl -q -w >/dev/null && mv "$dir/sysctl.orig" "$dir/sysctl.restored"
	fi
	for p in "${host_paths[@]}"; do
		grep -qx "$p" "$dir/preexisting" 2>/dev/null || rm -rf "$p"
	done
	# preexisting stays: it describes the machine before the first up.
	rm -rf "$dir/data" "$dir/run" "$dir/pids"
	echo "cluster: down in $((SECONDS - start))s"
}

# cmd_check prints everything up leaves on the machine while the node runs;
# after down it prints nothing and succeeds.
cmd_check() {
	local left=() p top
	for p in "$dir/pids"/*.pid; do
		[[ -s $p ]] && kill -0 "$(cat "$p")" 2>/dev/null && left+=("process $(basename "$p" .pid) (pid $(cat "$p"))")
	done
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "-address $dir/run/containerd.sock" && left+=("containerd shim (pid ${p#/proc/})")
	done
	while read -r p; do left+=("mount $p"); done < <(awk -v s="$dir/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo)
	[[ -e $nsf ]] && left+=("network namespace $ns")
	for top in "${cgroup_tops[@]}"; do
		grep -qx "cgroup:$top" "$dir/preexisting" 2>/dev/null && continue
		for p in /sys/fs/cgroup/*/"$top"; do
			[[ -d $p ]] && left+=("cgroup $p")
		done
	done
	local saved=$dir/sysctl.orig
	[[ -f $saved ]] || saved=$dir/sysctl.restored
	if [[ -f $saved ]]; then
		local want now
		while read -r want; do
			now=$(sysctl "${want%% =*}" 2>/dev/null)
			[[ $now == "$want" ]] || left+=("sysctl $now (was: $want)")
		done <"$saved"
	fi
	for p in "${host_paths[@]}"; do
		[[ -e $p ]] && ! grep -qx "$p" "$dir/preexisting" 2>/dev/null && left+=("path $p")
	done
	if ((${#left[@]})); then
		printf 'cluster: left behind: %s\n' "${left[@]}" >&2
		return 1
	fi
	echo "cluster: nothing left behind"
}

main() {
	local cmd=${1:-}
	[[ $# -gt 0 ]] && shift
	case $cmd in
	up) cmd_up ;;
	down) cmd_down ;;
	check) cmd_check ;;
	images)
		running containerd || die "the node is not up; run '$0 up'"
		build_images
		import_images
		;;
	kubectl) kc "$@" ;;
	helm)
		# Helm's caches and its repository list stay in the state directory.
		inns env HELM_CACHE_HOME="$dir/helm/cache" HELM_CONFIG_HOME="$dir/helm/config" HELM_DATA_HOME="$dir/helm/data" \
			KUBECONFIG="$dir/pki/kubeconfig" "$bin/helm" "$@"
		;;
	exec) inns "$@" ;;
	*) die "unknown command '$cmd'; want up, down, check, images, kubectl, helm or exec" ;;
	esac
}

# On one line with main, so that editing this file during a run is harmless.
main "$@"; exit $?
