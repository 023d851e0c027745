#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for splice-orc's tests: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler built from their Go modules at pinned releases, and
# kwok standing in for nodes (it does not run containers; pods get scheduled, become Ready and get
# IPs). Nothing is downloaded but Go modules; binaries are cached outside the tree.
#
#   control-plane.sh build        build the binaries once into $CACHE (about 16 min cold, 2 cores)
#   control-plane.sh build-kubelet  also build the kubelet of the same release (for real-node.sh)
#   control-plane.sh up           start on loopback; prints KUBECONFIG=...
#   control-plane.sh down         stop what `up` started
#
# Environment: CACHE (default ~/.cache/splice-orc-k8s), RUN (state and logs, default
# /tmp/splice-orc-k8s-$USER), API_PORT (default 6443), ETCD_PORT (default 2379), ETCD_PEER_PORT
# (default 2380), API_EXTRA_SAN (more subjectAltNames of the apiserver's certificate, e.g.
# IP:10.244.77.1 for pods of a real node). `up` fails as soon as a component it started exits,
# with the end of its log.
set -euo pipefail
K8S_VER=1.35.4
ETCD_VER=3.6.16
KWOK_VER=0.8.0
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/splice-orc-k8s}
BIN=$CACHE/bin-$K8S_VER
RUN=${RUN:-/tmp/splice-orc-k8s-${USER:-$(id -u)}}
API_PORT=${API_PORT:-6443}
ETCD_PORT=${ETCD_PORT:-2379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-2380}
# One package at a time at low priority: the apiserver's link step alone peaks near 2 GB.
GO_BUILD="env GOMAXPROCS=1 nice -n 19 go build -p 1 -trimpath"
# The commands of k8s.io/kubernetes in the wrapper module's tools file (`build` makes all but the
# kubelet, `build-kubelet` the kubelet).
K8S_TOOLS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet"

built() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwok-stages.yaml; do
    [ -e "$BIN/$b" ] || return 1
  done
}

# The wrapper module in $CACHE/src/k8s that builds k8s.io/kubernetes's commands, made once (and
# its tools file brought up to K8S_TOOLS if an older run made it without the kubelet).
k8s_module() {
  mkdir -p "$CACHE/src/k8s"
  cd "$CACHE/src/k8s"
  if [ -f go.sum ] && grep -q '/cmd/kubelet"' tools.go; then return 0; fi
  if [ ! -f go.mod ]; then
    # k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install`
    # refuses; a wrapper module pins each of them to the matching published v0.x release instead.
    curl -fsS --max-time 60 "https://proxy.golang.org/k8s.io/kubernetes/@v/v$K8S_VER.mod" -o upstream.mod
    {
      printf 'module local/k8sbuild\n\ngo 1.25.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VER"
      awk -v v="v0.${K8S_VER#1.}" '/=> \.\/staging/ {print "\t" $1 " => " $1 " " v}' upstream.mod
      printf ')\n'
    } >go.mod
  fi
  printf '//go:build tools\n\npackage tools\n\nimport (\n' >tools.go
  for c in $K8S_TOOLS; do
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >>tools.go
  done
  printf ')\n' >>tools.go
  GOMAXPROCS=1 go mod tidy
}

# build_k8s COMMAND: builds k8s.io/kubernetes/cmd/COMMAND into $BIN unless it is there.
build_k8s() {
  [ -x "$BIN/$1" ] && return 0
  echo "building $1" >&2
  (cd "$CACHE/src/k8s" && $GO_BUILD -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VER" \
    -o "$BIN/$1.tmp" "k8s.io/kubernetes/cmd/$1") && mv "$BIN/$1.tmp" "$BIN/$1"
}

# The kubelet of the control plane's release, for a real node (real-node.sh).
build_kubelet() {
  command -v go >/dev/null || { echo "control-plane.sh: Go is required to build the kubelet" >&2; exit 1; }
  mkdir -p "$BIN"
  k8s_module
  build_k8s kubelet
  echo "kubelet in $BIN" >&2
}

build() {
  if built; then
    echo "control plane binaries in $BIN (cached)" >&2
    return 0
  fi
  command -v go >/dev/null || { echo "control-plane.sh: Go is required to build the control plane" >&2; exit 1; }
  mkdir -p "$BIN" "$CACHE/src/etcd"
  k8s_module
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do build_k8s "$c"; done
  cd "$CACHE/src/etcd"
  [ -f go.sum ] || { printf 'module local/etcdbuild\n\ngo 1.25.0\n' >go.mod; go get "go.etcd.io/etcd/server/v3@v$ETCD_VER"; }
  [ -x "$BIN/etcd" ] || { echo "building etcd" >&2; $GO_BUILD -mod=mod -ldflags='-s -w' -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$BIN/etcd.tmp" "$BIN/etcd"; }
  if [ ! -x "$BIN/kwok" ]; then
    echo "building kwok" >&2
    GOBIN="$CACHE/gobin" GOMAXPROCS=1 nice -n 19 go install -p 1 -trimpath -ldflags='-s -w' "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VER"
    mv "$CACHE/gobin/kwok" "$BIN/kwok"
  fi
  # kwok's stock stages: nodes become Ready and keep a lease; pods become Ready and get an IP.
  local stages
  stages=$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VER/kustomize/stage
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo ---
    cat "$stages/$f.yaml"
  done >"$BIN/kwok-stages.yaml.tmp"
  mv "$BIN/kwok-stages.yaml.tmp" "$BIN/kwok-stages.yaml"
  echo "control plane binaries in $BIN" >&2
}

start() {
  local name=$1
  shift
  nohup "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# The end of a component's log, indented, on stderr.
log_tail() {
  echo "control-plane.sh: the end of $RUN/$1.log:" >&2
  tail -n 20 "$RUN/$1.log" 2>/dev/null | sed 's/^/  /' >&2
}

# Fails, naming it and showing its log, when a component `up` started is no longer running (say,
# its port was taken), instead of leaving the others to wait for it.
all_running() {
  local f name
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    kill -0 "$(cat "$f")" 2>/dev/null && continue
    echo "control-plane.sh: $name exited" >&2
    log_tail "$name"
    return 1
  done
}

# wait_for COMPONENT WHAT COMMAND...: runs COMMAND until it succeeds (at most 60 s), as long as
# every component started so far is running. On a timeout, shows COMPONENT's log.
wait_for() {
  local component=$1 what=$2
  shift 2
  for _ in $(seq 1 240); do
    "$@" >/dev/null 2>&1 && return 0
    all_running || { echo "control-plane.sh: gave up waiting for $what" >&2; return 1; }
    sleep 0.25
  done
  echo "control-plane.sh: timed out waiting for $what" >&2
  log_tail "$component"
  return 1
}

# etcd's own health endpoint says it serves (plain HTTP, so bash alone can ask).
etcd_healthy() {
  local reply
  reply=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET /health HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
    _ "$ETCD_PORT" 2>/dev/null) || return 1
  [[ $reply == *'"health":"true"'* ]]
}

# kwok has taken the node over: it reports it Ready.
node_ready() {
  [ "$("$BIN/kubectl" --kubeconfig "$1" --request-timeout=2s get node kwok-node-0 \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

up() {
  built || { echo "control-plane.sh: binaries missing in $BIN; run: $0 build" >&2; exit 1; }
  down 2>/dev/null || true
  rm -rf "$RUN"
  mkdir -p "$RUN/pki"
  local p=$RUN/pki kc=$RUN/kubeconfig token
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 7 -subj /CN=splice-orc-test-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$p/apiserver.key" -out "$p/apiserver.csr" -subj /CN=kube-apiserver 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\n' "${API_EXTRA_SAN:+,$API_EXTRA_SAN}" >"$p/ext.cnf"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -out "$p/apiserver.crt" -days 7 -extfile "$p/ext.cnf" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  # The apiserver's client certificate towards kubelets (logs, exec) of real nodes (real-node.sh).
  openssl req -newkey rsa:2048 -nodes -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" \
    -subj /O=system:masters/CN=kube-apiserver-kubelet-client 2>/dev/null
  openssl x509 -req -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -out "$p/kubelet-client.crt" -days 7 2>/dev/null
  token=$(openssl rand -hex 24)
  echo "$token,admin,admin,system:masters" >"$p/token.csv"
  cat >"$kc" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$p/ca.crt"}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: admin, namespace: default}}]
current-context: local
KC
  start etcd "$BIN/etcd" --name local --data-dir "$RUN/etcd" --log-level warn --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_for etcd "etcd's health endpoint" etcd_healthy
  # --endpoint-reconciler-type=none: the apiserver would otherwise loop on its loopback address.
  # --allow-privileged: as kubeadm and kind set it, so that privileged containers are refused by
  # splice-orc's admission policy, not by the apiserver's own default. ValidatingAdmissionPolicy
  # needs no flag (an admission plugin on by default since 1.30).
  start apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --token-auth-file="$p/token.csv" --authorization-mode=Node,RBAC \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.96.0.0/16 \
    --endpoint-reconciler-type=none --allow-privileged=true \
    --kubelet-client-certificate="$p/kubelet-client.crt" --kubelet-client-key="$p/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP
  # A bounded request: something else on the port may take the connection and never answer.
  wait_for apiserver kube-apiserver "$BIN/kubectl" --kubeconfig "$kc" --request-timeout=2s get --raw /readyz
  start kcm "$BIN/kube-controller-manager" --kubeconfig="$kc" --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" --use-service-account-credentials
  start scheduler "$BIN/kube-scheduler" --kubeconfig="$kc" --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
  # Pod IPs from a loopback range: whatever the pod-manager sends to a pod stays on this machine
  # (there is no container behind a kwok pod, so a connection is refused at once).
  # kwok makes every pod Ready at once, except those labelled kubelet.splice-orc.test/manual: for
  # them a test acts as the kubelet (runs a real module-server at the pod's IP, reports the status).
  awk '/name: pod-ready/ { ready = 1 }
    ready && /matchExpressions:/ {
      print
      print "    - key: '"'"'.metadata.labels[\"kubelet.splice-orc.test/manual\"]'"'"'"
      print "      operator: '"'"'DoesNotExist'"'"'"
      ready = 0
      next
    }
    { print }' "$BIN/kwok-stages.yaml" >"$RUN/kwok-stages.yaml"
  # kwok manages only its own node (annotated kwok.x-k8s.io/node: fake): a real kubelet that joins
  # (real-node.sh) keeps its node and its pods to itself.
  start kwok "$BIN/kwok" --kubeconfig="$kc" --config="$RUN/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=127.77.0.0/16 --node-ip=127.0.0.1 --node-lease-duration-seconds=40
  "$BIN/kubectl" --kubeconfig "$kc" apply -f - >/dev/null <<'NODE'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, type: kwok}
  annotations: {kwok.x-k8s.io/node: fake}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
NODE
  wait_for kcm "the default service account" "$BIN/kubectl" --kubeconfig "$kc" --request-timeout=2s get serviceaccount default
  wait_for kwok "kwok to make the node Ready" node_ready "$kc"
  # The scheduler has no health endpoint here (secure port off): it has at least not exited.
  all_running
  echo "KUBECONFIG=$kc"
}

down() {
  # Reverse order; the apiserver can hang on etcd reconnects, hence the SIGKILL after 10 s.
  for name in kwok scheduler kcm apiserver etcd; do
    [ -f "$RUN/$name.pid" ] || continue
    local pid
    pid=$(cat "$RUN/$name.pid")
    rm -f "$RUN/$name.pid"
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
build | up | down) "$1" ;;
build-kubelet) build_kubelet ;;
*) echo "usage: $0 build|build-kubelet|up|down" >&2; exit 2 ;;
esac
