/**
 * The Helm chart (k8s/chart) against the real API server, with helm v3 built from the Go module
 * proxy (test/tools/go-tools.sh): `helm install` creates the pod-manager's objects, a pod-manager
 * running with the installed ConfigMap's config and the installed service account's token (its
 * Role, under the installed admission policies) creates a module Deployment, and `helm upgrade`
 * changes the objects while the token Secret stays.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUTH_SECRET, POD_MANAGER } from '@splice-orc/pod-manager/kubernetes';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  http,
  kubeconfig,
  moduleDeployments,
  modules,
  repoRoot,
  serviceAccountKubeconfig,
  startClusterPodManager,
} from './harness.js';

const api = adminApi();
const chartDir = join(repoRoot, 'k8s/chart');
let helm: string;

beforeAll(() => {
  // Built once from the Go module proxy (minutes cold), then cached in ~/.cache.
  helm = execFileSync('bash', [join(repoRoot, 'test/tools/go-tools.sh'), 'path', 'helm'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}, 30 * 60_000);

/** Runs helm against the test cluster; returns its output, throws with its stderr. */
function runHelm(args: string[]): string {
  const home = mkdtempSync(join(tmpdir(), 'splice-helm-home-'));
  const r = spawnSync(helm, [...args, '--kubeconfig', kubeconfig], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { PATH: process.env.PATH, HOME: home, XDG_CACHE_HOME: join(home, 'cache') },
  });
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function valuesFile(values: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'splice-values-')), 'values.json');
  writeFileSync(file, JSON.stringify(values));
  return file;
}

describe('helm install and upgrade of k8s/chart', () => {
  it('installs the pod-manager, whose config and Role create a module Deployment, and upgrades it', async () => {
    const namespace = `helm-${Date.now().toString(36)}`;
    const values = {
      image: { repository: 'splice-orc', tag: 'test' },
      moduleConfig: { lodash: modules.lodash },
    };
    const installed = runHelm([
      'install',
      'splice-orc',
      chartDir,
      '--namespace',
      namespace,
      '--create-namespace',
      '--values',
      valuesFile(values),
    ]);
    expect(installed).toContain('STATUS: deployed');
    expect(installed).toContain(`http://splice-orc-pod-manager.${namespace}.svc:8000`);
    const deployment = await api.apps.readNamespacedDeployment({ name: POD_MANAGER, namespace });
    expect(deployment.spec?.template.spec?.containers[0]?.image).toBe('splice-orc:test');
    const secret = await api.core.readNamespacedSecret({ name: AUTH_SECRET, namespace });
    const token = secret.data?.token;
    expect(Buffer.from(token ?? '', 'base64').toString()).toHaveLength(48);

    // The pod-manager as the chart deploys it: the installed ConfigMap's config, the installed
    // service account's token; only where it listens and keeps its files is changed to run here.
    const configMap = await api.core.readNamespacedConfigMap({ name: 'splice-orc-config', namespace });
    const config = JSON.parse(configMap.data?.['config.json'] ?? '{}');
    expect(config.kubernetes).toMatchObject({ namespace, module_image: 'splice-orc:test' });
    const dir = mkdtempSync(join(tmpdir(), 'splice-helm-pm-'));
    const configPath = join(dir, 'config.json');
    config.kubernetes.kubeconfig = await serviceAccountKubeconfig(namespace);
    Object.assign(config.server, {
      host: '127.0.0.1',
      port: 0,
      cache_dir: dir,
      state_file: join(dir, 'state.json'),
      start_timeout_ms: 30_000,
    });
    writeFileSync(configPath, JSON.stringify(config));
    {
      await using pm = await startClusterPodManager(configPath);
      const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
      expect(load.status, JSON.stringify(load.body)).toBe(200);
      const [module] = await moduleDeployments(namespace);
      expect(module?.metadata?.annotations?.['splice-orc.dev/module-name']).toBe('lodash');
      expect(module?.spec?.template.spec?.containers[0]?.image).toBe('splice-orc:test');
      expect((await http(`${pm.url}/modules/lodash`, { method: 'DELETE' })).status).toBe(200);
    }

    const resources = { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '2Gi' } };
    const upgraded = runHelm([
      'upgrade',
      'splice-orc',
      chartDir,
      '--namespace',
      namespace,
      '--values',
      valuesFile({ ...values, image: { repository: 'splice-orc', tag: 'test2' }, resources }),
    ]);
    expect(upgraded).toContain('REVISION: 2');
    const after = await api.apps.readNamespacedDeployment({ name: POD_MANAGER, namespace });
    const container = after.spec?.template.spec?.containers[0];
    expect(container?.image).toBe('splice-orc:test2');
    expect(container?.resources).toEqual(resources);
    // The config changed (module_image), so the pod template's hash did: the pod-manager restarts.
    const hash = (d: typeof after) =>
      d.spec?.template.metadata?.annotations?.['splice-orc.dev/config-sha256'];
    expect(hash(after)).not.toBe(hash(deployment));
    expect((await api.core.readNamespacedSecret({ name: AUTH_SECRET, namespace })).data?.token).toBe(token);

    runHelm(['uninstall', 'splice-orc', '--namespace', namespace]);
    await api.core.deleteNamespace({ name: namespace });
  });
});
