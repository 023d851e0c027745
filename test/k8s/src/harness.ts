/**
 * Fixtures of the cluster tests: API clients on the test control plane, a namespace per test file,
 * and real pod-managers (the app `splice-orc serve` runs) with the Kubernetes backend.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { buildApp, loadConfig } from '@splice-orc/pod-manager';
import { POD_MANAGER } from '@splice-orc/pod-manager/kubernetes';
import type { FastifyInstance } from 'fastify';
import { inject } from 'vitest';

// The same request and polling helpers as the end-to-end tests.
export { eventually, http } from '../../e2e/src/harness.js';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const kubeconfig = inject('kubeconfig');
const kubectlPath = inject('kubectl');

/** Clients with the admin kubeconfig (for checking what the pod-manager did). */
export function adminApi() {
  return clientsFor(kubeconfig);
}

/** Clients that authenticate as the kubeconfig at `path` says. */
export function clientsFor(path: string) {
  const config = new KubeConfig();
  config.loadFromFile(path);
  return { config, apps: config.makeApiClient(AppsV1Api), core: config.makeApiClient(CoreV1Api) };
}

/** Label selector of everything the pod-manager manages. */
export const MANAGED = 'app.kubernetes.io/managed-by=splice-orc';

/** The module Deployments in a namespace. */
export async function moduleDeployments(namespace: string) {
  return (await adminApi().apps.listNamespacedDeployment({ namespace, labelSelector: MANAGED })).items;
}

/** Runs the test cluster's kubectl; resolves with its output, rejects with its stderr. */
export async function kubectl(args: string[], options: { kubeconfig?: string; cwd?: string } = {}) {
  try {
    const { stdout } = await promisify(execFile)(
      kubectlPath,
      ['--kubeconfig', options.kubeconfig ?? kubeconfig, ...args],
      {
        cwd: options.cwd,
        timeout: 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    return stdout;
  } catch (error) {
    throw new Error(`kubectl ${args.join(' ')}: ${(error as { stderr?: string }).stderr ?? error}`);
  }
}

/** Creates a namespace of its own for a test file. */
export async function createNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await adminApi().core.createNamespace({ body: { metadata: { name } } });
  return name;
}

/** A kubeconfig that authenticates as the pod-manager's service account (a TokenRequest token). */
export async function serviceAccountKubeconfig(namespace: string): Promise<string> {
  const { status } = await adminApi().core.createNamespacedServiceAccountToken({
    name: POD_MANAGER,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = adminApi().config.getCurrentCluster();
  const path = join(mkdtempSync(join(tmpdir(), 'splice-sa-')), 'kubeconfig');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'c', cluster: { server: cluster?.server, 'certificate-authority': cluster?.caFile } },
      ],
      users: [{ name: 'pod-manager', user: { token: status?.token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'pod-manager', namespace } }],
      'current-context': 'c',
    }),
  );
  return path;
}

/** Module configs the tests use: real npm specs (pods install them; kwok runs no container). */
export const modules = {
  lodash: { package: 'lodash@4', lib_cpu_req: '250m', lib_mem_size_req: '100Mi' },
  'left-pad': { package: 'left-pad@1', dependency: ['is-number@7'] },
};

/** A running pod-manager with the Kubernetes backend, disposable with `await using`. */
export interface ClusterPodManager {
  url: string;
  app: FastifyInstance;
  configPath: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Writes a config for the namespace and returns its path. */
export function writeClusterConfig(o: {
  namespace: string;
  modules?: Record<string, object>;
  kubeconfig?: string;
  server?: Record<string, unknown>;
  kubernetes?: Record<string, unknown>;
}): string {
  const dir = mkdtempSync(join(tmpdir(), 'splice-k8s-pm-'));
  const path = join(dir, 'config.json');
  const config = {
    kubernetes: {
      namespace: o.namespace,
      kubeconfig: o.kubeconfig ?? kubeconfig,
      module_image: 'splice-orc:test',
      ...o.kubernetes,
    },
    module_config: o.modules ?? modules,
    server: {
      backend: 'kubernetes',
      port: 0,
      start_timeout_ms: 30_000,
      state_file: join(dir, 'state.json'),
      lifecycle_interval_ms: 60_000,
      ...o.server,
    },
  };
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** Starts a pod-manager in this process on 127.0.0.1 (an existing config path starts a "restart"). */
export async function startClusterPodManager(
  configPath: string,
  options: { logs?: Array<Record<string, unknown>> } = {},
): Promise<ClusterPodManager> {
  const logs = options.logs;
  const logger = logs
    ? { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } }
    : { level: process.env.LOG_LEVEL ?? 'silent' };
  const app = await buildApp(loadConfig(configPath), { logger });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return { url, app, configPath, [Symbol.asyncDispose]: () => app.close() };
}
