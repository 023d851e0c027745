/**
 * Fixtures of the real-node suite: a namespace with the pod-manager's Role (and its admission and
 * network policies, as `splice-orc init` applies them, without its Deployment), a config that
 * places module pods on the real node, and fixture packages served to the pods' init containers
 * over HTTP on the bridge address (the host's side of the pods' network).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubernetesObjectApi, PatchStrategy } from '@kubernetes/client-node';
import { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE, podManagerManifests } from '@splice-orc/pod-manager/kubernetes';
import {
  adminApi,
  createNamespace,
  repoRoot,
  serviceAccountKubeconfig,
  writeClusterConfig,
} from '../harness.js';
import { NODE_IP } from './global-setup.js';

/** The label real-node.sh gives its node; module pods select it (kubernetes.node_selector). */
export const REAL_NODE = { 'splice-orc.test/real-node': 'true' };

/**
 * A namespace with everything `splice-orc init` applies but the pod-manager's Deployment, and a
 * kubeconfig with its service account's token: the test runs the pod-manager with its Role.
 */
export async function namespaceWithRole(prefix: string): Promise<{ namespace: string; kubeconfig: string }> {
  const namespace = await createNamespace(prefix);
  const api = KubernetesObjectApi.makeApiClient(adminApi().config);
  const manifests = podManagerManifests({ namespace, image: DEFAULT_IMAGE, modules: {} });
  for (const object of manifests.filter((m) => !['Namespace', 'Deployment'].includes(m.kind ?? ''))) {
    await api.patch(object, undefined, undefined, 'splice-orc-test', true, PatchStrategy.ServerSideApply);
  }
  return { namespace, kubeconfig: await serviceAccountKubeconfig(namespace) };
}

/** A pod-manager config for real pods: the product images, loaded locally, on the real node. */
export function realNodeConfig(o: {
  namespace: string;
  kubeconfig: string;
  modules: Record<string, object>;
  server?: Record<string, unknown>;
}): string {
  return writeClusterConfig({
    namespace: o.namespace,
    kubeconfig: o.kubeconfig,
    modules: o.modules,
    kubernetes: {
      module_image: DEFAULT_IMAGE,
      python_module_image: DEFAULT_PYTHON_IMAGE,
      image_pull_policy: 'Never',
      node_selector: REAL_NODE,
    },
    server: { start_timeout_ms: 120_000, lifecycle_interval_ms: 1_000, ...o.server },
  });
}

/** Fixture packages (test/fixtures/NAME, packed by npm) served at http://NODE_IP:port/NAME.tgz. */
export interface FixtureRegistry {
  /** The `package` spec of fixture NAME. */
  spec(name: string): string;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function serveFixtures(names: string[]): Promise<FixtureRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'splice-fixtures-'));
  const files = new Map<string, Buffer>();
  for (const name of names) {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['pack', '--silent', '--pack-destination', dir, join(repoRoot, 'test/fixtures', name)],
      { timeout: 60_000 },
    );
    files.set(`/${name}.tgz`, readFileSync(join(dir, stdout.trim().split('\n').pop() ?? '')));
  }
  const server = createServer((request, response) => {
    const body = files.get(request.url ?? '');
    response.writeHead(body ? 200 : 404, { 'content-type': 'application/octet-stream' });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, NODE_IP, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    spec: (name) => `http://${NODE_IP}:${port}/${name}.tgz`,
    [Symbol.asyncDispose]: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
