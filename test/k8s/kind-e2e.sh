#!/usr/bin/env bash
# End to end on a real cluster, for machines with a Docker engine: creates a kind cluster, builds
# the image and loads it into the cluster, deploys the pod-manager with `splice-orc init`, runs the
# client tests (src/*.kind.ts) against it through a port-forward, and deletes the cluster.
#
#   test/k8s/kind-e2e.sh            (from the repository root, after `npx pnpm install`)
#
# Needs docker, kind and kubectl on PATH (kind: `go install sigs.k8s.io/kind@v0.29.0`), and
# registry.npmjs.org reachable from the cluster (module pods install their packages at start).
# KEEP_CLUSTER=1 leaves the cluster running for a look around.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-splice-orc-e2e}
IMAGE=splice-orc:e2e
NAMESPACE=splice-orc
PORT=${PORT:-18000}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-e2e.sh: $tool is required" >&2; exit 1; }
done
cleanup() {
  [ -n "${FORWARD_PID:-}" ] && kill "$FORWARD_PID" 2>/dev/null || true
  [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$CLUSTER"
}
trap cleanup EXIT

kind create cluster --name "$CLUSTER" --wait 180s
export KUBECONFIG
KUBECONFIG=$(mktemp)
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

docker build -f docker/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

npx pnpm build
node packages/pod-manager/dist/cli.js init "$NAMESPACE" --image "$IMAGE" --config test/k8s/kind-config.json --timeout 300

kubectl -n "$NAMESPACE" port-forward svc/splice-orc-pod-manager "$PORT:8000" >/dev/null &
FORWARD_PID=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

SPLICE_E2E_URL="http://127.0.0.1:$PORT" \
  SPLICE_E2E_TOKEN=$(kubectl -n "$NAMESPACE" get secret splice-orc-auth -o jsonpath='{.data.token}' | base64 -d) \
  npx pnpm --filter @splice-orc/k8s-tests exec vitest run --config vitest.kind.config.ts
