#!/usr/bin/env bash
# A real Kubernetes node for the control plane of control-plane.sh: the kubelet of the same release
# (built the same way, cached) on Debian's containerd with a CNI bridge on a private 10.x/24. Pods
# run as real containers from images loaded into containerd locally; nothing is pulled. kwok keeps
# faking its own node for the fast tests (it manages only nodes annotated kwok.x-k8s.io/node=fake).
#
#   real-node.sh up [IMAGE...]   join the running control plane (same RUN, API_PORT as `up`), load
#                                the images (from the Docker engine) into containerd; needs root
#   real-node.sh down            delete the node's pods, stop kubelet and containerd, and remove what
#                                they left: mounts, netns, cgroups, bridge, CNI chains, state dirs
#
# The node is named $NODE_NAME and labelled splice-orc.test/real-node=true (module pods get there
# with kubernetes.node_selector). Pods get addresses on the bridge $BRIDGE, $POD_SUBNET.1 being the
# host's (the node's InternalIP); their traffic out is masqueraded (ipMasq), so that the init
# container's npm install reaches the registry through the host. The control plane must have been
# started with API_EXTRA_SAN=IP:$POD_SUBNET.1,IP:10.96.0.1 for pods to reach the API server (see
# `apiserver_proxy`).
#
# What it takes on this kind of machine (cgroup v1, no CAP_SYS_RESOURCE, shared host network):
# containerd's `restrict_oom_score_adj`, kubelet's failCgroupV1: false, cgroupfs,
# makeIPTablesUtilChains: false (its KUBE-FIREWALL rule would drop traffic to 127/8 on the whole
# host), and a locally built pause image. containerd runs with a root, state and socket of its own,
# beside any containerd Docker runs.
#
# One real node per machine: containerd's and the kubelet's places are fixed (see below).
#
# Environment: as control-plane.sh (CACHE, RUN, API_PORT), NODE_NAME (default splice-real-node),
# POD_SUBNET (first three octets, default 10.244.77), BRIDGE (default splice0).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VER=1.35.4
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/splice-orc-k8s}
BIN=$CACHE/bin-$K8S_VER
RUN=${RUN:-/tmp/splice-orc-k8s-${USER:-$(id -u)}}
API_PORT=${API_PORT:-6443}
NODE_NAME=${NODE_NAME:-splice-real-node}
POD_SUBNET=${POD_SUBNET:-10.244.77}
BRIDGE=${BRIDGE:-splice0}
NODE_IP=$POD_SUBNET.1
DOCKER=${DOCKER:-/usr/bin/docker}
PAUSE_IMAGE=splice-orc-test/pause:1
# containerd's and the kubelet's own places (the kubelet's are its defaults, as the teardown expects).
CTRD_ROOT=/var/lib/splice-orc-containerd
CTRD_STATE=/run/splice-orc-containerd
CTRD_SOCK=$CTRD_STATE/containerd.sock
NODE_RUN=$RUN/real-node
KUBELET_ROOT=/var/lib/kubelet
CNI_NET=splice-orc-real-node
SERVICE_IP=10.96.0.1
API_DNAT=(-s "$POD_SUBNET.0/24" -d "$SERVICE_IP/32" -p tcp --dport 443 -m comment --comment "$CNI_NET apiserver"
  -j DNAT --to-destination "$NODE_IP:$API_PORT")

log() { echo "real-node.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}
ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" --request-timeout=10s "$@"; }

# Debian's containerd, CNI plugins, socat and iptables, if missing (their service is not started: no systemd here,
# and a policy-rc.d keeps the postinst from starting one).
install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v socat >/dev/null || missing+=(socat)
  command -v iptables >/dev/null || missing+=(iptables)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  local policy=/usr/sbin/policy-rc.d ours=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    ours=1
  fi
  local apt=(apt-get -q -o DPkg::Lock::Timeout=600) status=0
  timeout 600 "${apt[@]}" update >&2 &&
    DEBIAN_FRONTEND=noninteractive timeout 900 "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 ||
    status=$?
  [ -n "$ours" ] && rm -f "$policy"
  [ "$status" -eq 0 ] || die "apt-get failed (status $status)"
}

# The pause image: a static binary that sleeps until it is told to stop, made once.
pause_image() {
  ctr_ images ls -q 2>/dev/null | grep -qx "docker.io/$PAUSE_IMAGE" && return 0
  local src=$CACHE/src/pause
  if [ ! -x "$src/pause" ]; then
    mkdir -p "$src"
    cat >"$src/main.go" <<'GO'
// The sandbox's first process: holds the pod's namespaces until the runtime stops it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
GO
    printf 'module local/pause\n\ngo 1.22\n' >"$src/go.mod"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o pause.tmp . && mv pause.tmp pause)
  fi
  tar -C "$src" -c pause | "$DOCKER" import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  "$DOCKER" save "$PAUSE_IMAGE" | ctr_ images import - >/dev/null
  log "pause image $PAUSE_IMAGE loaded"
}

# load_image NAME: Docker's image NAME into containerd, unless containerd has that very image.
load_image() {
  local name=$1 id mark
  id=$("$DOCKER" image inspect -f '{{.Id}}' "$name" 2>/dev/null) || die "no image $name in the Docker engine (docker/build-images.sh builds it)"
  mark=$CTRD_ROOT/splice-orc-images/${name//[:\/]/_}
  if [ "$(cat "$mark" 2>/dev/null)" = "$id" ] && ctr_ images ls -q | grep -q "/${name%%:*}:${name##*:}\$"; then
    log "$name already in containerd"
    return 0
  fi
  local start=$SECONDS
  "$DOCKER" save "$name" | ctr_ images import - >/dev/null
  mkdir -p "$(dirname "$mark")"
  echo "$id" >"$mark"
  log "$name loaded into containerd ($((SECONDS - start)) s)"
}

containerd_config() {
  cat <<EOF
version = 2
root = "$CTRD_ROOT"
state = "$CTRD_STATE"
[grpc]
  address = "$CTRD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE this machine lacks.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_RUN/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
EOF
}

cni_config() {
  cat <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_RUN/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET.0/24", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

kubelet_config() {
  cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CTRD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$RUN/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

# A client certificate of the node (system:node:NAME in system:nodes, as the Node authorizer wants).
node_kubeconfig() {
  local p=$RUN/pki
  openssl req -newkey rsa:2048 -nodes -keyout "$NODE_RUN/node.key" -out "$NODE_RUN/node.csr" \
    -subj "/O=system:nodes/CN=system:node:$NODE_NAME" 2>/dev/null
  openssl x509 -req -in "$NODE_RUN/node.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -out "$NODE_RUN/node.crt" -days 7 2>/dev/null
  cat >"$NODE_RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$p/ca.crt"}}]
users: [{name: node, user: {client-certificate: "$NODE_RUN/node.crt", client-key: "$NODE_RUN/node.key"}}]
contexts: [{name: local, context: {cluster: local, user: node}}]
current-context: local
KC
}

# start NAME COMMAND...: runs COMMAND in the background, logging to $NODE_RUN/NAME.log.
start() {
  local name=$1
  shift
  setsid nohup "$@" </dev/null >"$NODE_RUN/$name.log" 2>&1 &
  echo $! >"$NODE_RUN/$name.pid"
}

running() { [ -f "$NODE_RUN/$1.pid" ] && kill -0 "$(cat "$NODE_RUN/$1.pid")" 2>/dev/null; }

# wait_until WHAT SECONDS COMPONENT COMMAND...: COMMAND succeeds, or fails naming WHAT with COMPONENT's log.
wait_until() {
  local what=$1 seconds=$2 component=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! running "$component" || [ "$SECONDS" -ge "$deadline" ]; then
      log "gave up waiting for $what; the end of $NODE_RUN/$component.log:"
      tail -n 25 "$NODE_RUN/$component.log" | sed 's/^/  /' >&2
      exit 1
    fi
    sleep 0.5
  done
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# Pods reach the API server at $NODE_IP:$API_PORT (a forwarder to its loopback address). There is
# no kube-proxy: the one Service pods need, the API server's ($SERVICE_IP:443, what in-cluster
# clients dial), is a DNAT rule for pods' packets only, named by its comment.
apiserver_proxy() {
  start apiserver-proxy socat "TCP-LISTEN:$API_PORT,bind=$NODE_IP,reuseaddr,fork" "TCP:127.0.0.1:$API_PORT"
  iptables -t nat -A PREROUTING "${API_DNAT[@]}"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (containerd, kubelet, a bridge)"
  [ -f "$RUN/kubeconfig" ] || die "no control plane in $RUN (run control-plane.sh up with the same RUN)"
  down 2>/dev/null || true
  install_packages
  timeout 10 "$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers at $DOCKER (docker/build-images.sh starts one)"
  "$HERE/control-plane.sh" build-kubelet
  mkdir -p "$NODE_RUN/cni" "$CTRD_ROOT" "$CTRD_STATE"
  # The bridge exists before the kubelet starts: its address is the node's InternalIP.
  ip link add "$BRIDGE" type bridge 2>/dev/null || true
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  containerd_config >"$NODE_RUN/containerd.toml"
  cni_config >"$NODE_RUN/cni/10-$CNI_NET.conflist"
  kubelet_config >"$NODE_RUN/kubelet.yaml"
  node_kubeconfig
  start containerd containerd --config "$NODE_RUN/containerd.toml"
  wait_until containerd 30 containerd ctr_ version
  pause_image
  local image
  for image in "$@"; do load_image "$image"; done
  apiserver_proxy
  start kubelet "$BIN/kubelet" --config="$NODE_RUN/kubelet.yaml" --kubeconfig="$NODE_RUN/kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$KUBELET_ROOT" \
    --node-labels=splice-orc.test/real-node=true --v=1
  local start=$SECONDS
  wait_until "the node to be Ready" 90 kubelet node_ready
  log "node $NODE_NAME Ready ($((SECONDS - start)) s; logs in $NODE_RUN)"
}

# stop NAME: stops what `start NAME` started (TERM, then KILL after 10 s).
stop() {
  local f=$NODE_RUN/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  rm -f "$f"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

# The node's pods, deleted through the API while the kubelet still runs them (so that it stops
# their containers and forgets them), then the node object.
delete_pods() {
  running kubelet && [ -f "$RUN/kubeconfig" ] || return 0
  kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
    --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 || true
  kubectl_ delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
}

# Whatever containers containerd still has (a kubelet that died leaves them running).
remove_containers() {
  [ -S "$CTRD_SOCK" ] && running containerd || return 0
  local c
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
  sleep 1
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true
    ctr_ containers delete "$c" >/dev/null 2>&1 || true
  done
}

# Mounts on and under the given directories, deepest first (the kubelet bind-mounts its root
# directory onto itself).
unmount_under() {
  local dir m
  for dir in "$@"; do
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

# The kubepods cgroups in every hierarchy, leaves first (each is empty once its pods are gone).
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# The bridge plugin's masquerade chains (CNI-<hash>, with a comment naming the network) and the
# POSTROUTING rules that jump to them; portmap's CNI-HOSTPORT-* chains.
remove_cni_chains() {
  command -v iptables >/dev/null || return 0
  local rule chain
  { iptables -t nat -S PREROUTING 2>/dev/null || true; } | { grep -- "--comment \"$CNI_NET apiserver\"" || true; } |
    while read -r rule; do eval "iptables -t nat ${rule/-A/-D}" 2>/dev/null || true; done
  { iptables -t nat -S POSTROUTING 2>/dev/null || true; } | { grep -- "-j CNI-" || true; } | while read -r rule; do
    eval "iptables -t nat ${rule/-A/-D}" 2>/dev/null || true
  done
  for chain in $(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ && $2 !~ /^CNI-HOSTPORT/ { print $2 }'); do
    iptables -t nat -F "$chain" 2>/dev/null || true
    iptables -t nat -X "$chain" 2>/dev/null || true
  done
}

down() {
  delete_pods
  stop kubelet
  remove_containers
  stop apiserver-proxy
  unmount_under "$KUBELET_ROOT"
  stop containerd
  unmount_under "$CTRD_STATE" "$CTRD_ROOT/io.containerd.grpc.v1.cri" "$CTRD_ROOT/io.containerd.runtime.v2.task"
  local ns
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  remove_cgroups
  ip link delete "$BRIDGE" 2>/dev/null || true
  remove_cni_chains
  rm -rf "$KUBELET_ROOT" /var/log/pods /var/log/containers "$CTRD_STATE" "$NODE_RUN/ipam"
  # containerd's root keeps the images (loaded once) but no containers or snapshots of pods.
  rm -rf "$CTRD_ROOT/io.containerd.grpc.v1.cri" "$CTRD_ROOT/io.containerd.runtime.v2.task"
}

case "${1:-}" in
up)
  shift
  up "$@"
  ;;
down) down ;;
*)
  echo "usage: $0 up [IMAGE...]|down" >&2
  exit 2
  ;;
esac
