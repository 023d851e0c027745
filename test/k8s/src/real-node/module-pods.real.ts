/**
 * Module pods as real containers on a real node (real-node.sh: kubelet on containerd), through the
 * real pod-manager with its Role's token: the init container installs the package inside the pod,
 * the gRPC probes gate it, calls reach the container, and the container is as locked down as the
 * manifests say. Then what only a real node does: OOM kills, liveness restarts, preStop draining,
 * rolls on a dependency change, the Python image.
 */
import { connect } from '@splice-orc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, eventually, http, startClusterPodManager } from '../harness.js';
import { type FixtureRegistry, namespaceWithRole, realNodeConfig, serveFixtures } from './harness.js';

let fixtures: FixtureRegistry;
beforeAll(async () => {
  fixtures = await serveFixtures(['pod-probe']);
});
afterAll(() => fixtures?.[Symbol.asyncDispose]());

/** The module's pods as the API server has them. */
async function podsOf(namespace: string) {
  const { items } = await adminApi().core.listNamespacedPod({
    namespace,
    labelSelector: 'app.kubernetes.io/managed-by=splice-orc',
  });
  return items.filter((p) => !p.metadata?.deletionTimestamp);
}

const probe = () => ({
  package: fixtures.spec('pod-probe'),
  lib_mem_size_req: '64Mi',
  lib_mem_limit: '256Mi',
});

describe('module pods on a real node', () => {
  it('installs from the npm registry inside the pod, gates on the gRPC probes, and serves calls', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-ready');
    await using pm = await startClusterPodManager(
      realNodeConfig({ namespace, kubeconfig, modules: { lodash: { package: 'lodash@4' } } }),
    );
    const started = Date.now();
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const readyMs = Date.now() - started;
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    process.stderr.write(`lodash: Deployment created -> pod Ready and loaded in ${readyMs} ms\n`);
    const [pod] = await podsOf(namespace);
    expect(pod?.spec?.nodeName).toBe('splice-real-node');
    expect(pod?.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
    expect(pod?.status?.containerStatuses?.[0]?.ready).toBe(true);
    expect(load.body.replicas[0].endpoint).toBe(`${pod?.status?.podIP}:50051`);

    const client = connect(pm.url, { timeoutMs: 20_000 });
    try {
      const lodash: any = client.module('lodash');
      expect(await lodash.chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    } finally {
      await client.close();
    }
  });

  it('runs the server as uid 1000 with a read-only root, no capabilities and no new privileges', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-secure');
    await using pm = await startClusterPodManager(
      realNodeConfig({ namespace, kubeconfig, modules: { 'pod-probe': probe() } }),
    );
    const client = connect(pm.url, { timeoutMs: 120_000 });
    try {
      const m: any = client.module('pod-probe');
      const seen = await m.identity();
      expect(seen).toMatchObject({
        uid: 1000,
        gid: 1000,
        capEff: '0000000000000000',
        capBnd: '0000000000000000',
        noNewPrivs: '1',
        // 2: a seccomp filter (RuntimeDefault).
        seccomp: '2',
        writeRoot: 'EROFS',
        writeTmp: 'written',
      });
      const [pod] = await podsOf(namespace);
      expect(seen.hostname).toBe(pod?.metadata?.name);
    } finally {
      await client.close();
    }
  });

  it('fails a call fast when the server is OOM-killed past its memory limit, and says so', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-oom');
    await using pm = await startClusterPodManager(
      realNodeConfig({ namespace, kubeconfig, modules: { 'pod-probe': probe() } }),
    );
    const client = connect(pm.url, { timeoutMs: 60_000 });
    try {
      const m: any = client.module('pod-probe');
      expect((await m.identity()).uid).toBe(1000);
      const started = Date.now();
      const error = await m.allocate(1024).then(
        () => undefined,
        (e: unknown) => e,
      );
      const failedMs = Date.now() - started;
      expect(error, 'allocating 1 GiB under a 256 MiB limit').toBeInstanceOf(Error);
      expect(failedMs).toBeLessThan(15_000);
      process.stderr.write(`OOM: the call failed after ${failedMs} ms: ${(error as Error).message}\n`);
      // The kubelet reports the kill; the pod-manager's view of the module carries it.
      await eventually(
        async () => {
          const [pod] = await podsOf(namespace);
          return pod?.status?.containerStatuses?.[0]?.lastState?.terminated?.reason === 'OOMKilled';
        },
        30_000,
        'the kubelet to report OOMKilled',
      );
      expect(String((error as Error).message)).toMatch(/OOMKilled/);
      // The restarted server serves again.
      await eventually(async () => (await m.identity()).uid === 1000, 60_000, 'the restarted server');
    } finally {
      await client.close();
    }
  });
});
