#!/usr/bin/env bash
# The Go tools the monitoring and Helm tests run, built from the Go module proxy at pinned releases
# (nothing else is downloaded) and cached outside the tree, like test/k8s/control-plane.sh does for
# Kubernetes: helm (v3) and Prometheus's promtool.
#
#   go-tools.sh build        build what is missing into $CACHE/bin-* (a no-op when cached)
#   go-tools.sh path TOOL    build if missing, then print the binary's path (helm, promtool)
#
# Environment: CACHE (default ~/.cache/splice-orc-go-tools). Built at low priority (nice). promtool
# is built with Prometheus's `remove_all_sd` tag: no service discovery plugins (cloud SDKs), which
# the rule and metric checks never use. Measured cold here (2 cores, empty Go build cache, a Docker
# build running beside it): promtool 5.6 min (without the tag it was 10 min of CPU, 24 min wall at
# one core), helm 2.7 min of CPU; warm: 0.02 s, no build.
set -euo pipefail
HELM_VER=3.22.0
PROMETHEUS_VER=0.316.0
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/splice-orc-go-tools}

# install NAME PACKAGE@VERSION [TAGS]: `go install`s PACKAGE (with build TAGS) into
# $CACHE/bin-NAME-VERSION[-TAGS]/NAME unless there.
install() {
  local name=$1 pkg=$2 tags=${3:-} dir
  dir=$CACHE/bin-$name-${pkg##*@}${tags:+-$tags}
  [ -x "$dir/$name" ] && return 0
  command -v go >/dev/null || { echo "go-tools.sh: Go is required to build $name" >&2; exit 1; }
  echo "go-tools.sh: building $name from $pkg (cached in $dir)" >&2
  mkdir -p "$dir.tmp"
  # CGO off: static binaries; nice, so that tests running beside the build keep their pace.
  GOBIN="$dir.tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 \
    go install -trimpath -tags "$tags" -ldflags='-s -w' "$pkg"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

helm() { install helm "helm.sh/helm/v3/cmd/helm@v$HELM_VER"; echo "$CACHE/bin-helm-v$HELM_VER/helm"; }
promtool() {
  install promtool "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VER" remove_all_sd
  echo "$CACHE/bin-promtool-v$PROMETHEUS_VER-remove_all_sd/promtool"
}

case ${1:-} in
  build) helm >/dev/null && promtool >/dev/null ;;
  path)
    case ${2:-} in
      helm) helm ;;
      promtool) promtool ;;
      *) echo "usage: $0 path helm|promtool" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 build | path helm|promtool" >&2; exit 2 ;;
esac
