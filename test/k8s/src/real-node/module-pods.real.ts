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
      // a function of the app, called back through the pod's callback endpoint (its own port)
      expect(await lodash.map([1, 2, 3], (x: number) => x * 2)).toEqual([2, 4, 6]);
      expect(await lodash.sortBy(['ccc', 'a', 'bb'], (s: string) => s.length)).toEqual(['a', 'bb', 'ccc']);
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

  it('fails a call fast when the server is OOM-killed past its memory limit, says so, and restarts it', async () => {
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
      expect((error as { code?: string }).code).toBe('UNAVAILABLE');
      expect((error as Error).message).toMatch(/ended during the call: OOMKilled.*\(exit 137\)/);
      const view = await http(`${pm.url}/modules/pod-probe`);
      expect(view.body.restarts).toBeGreaterThanOrEqual(1);
      // The restarted server serves again.
      await eventually(async () => (await m.identity()).uid === 1000, 60_000, 'the restarted server');
    } finally {
      await client.close();
    }
  });

  it('restarts a frozen server by its liveness probe, and calls recover', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-frozen');
    await using pm = await startClusterPodManager(
      realNodeConfig({
        namespace,
        kubeconfig,
        modules: { 'pod-probe': probe() },
        server: { liveness_interval_ms: 2_000, liveness_failures: 2 },
      }),
    );
    const client = connect(pm.url, { timeoutMs: 120_000 });
    try {
      const m: any = client.module('pod-probe');
      const before = await m.identity();
      const started = Date.now();
      const frozen = await m.freeze(300_000).then(
        () => 'answered',
        (e: unknown) => e,
      );
      const restartMs = Date.now() - started;
      expect(frozen).toBeInstanceOf(Error);
      process.stderr.write(`liveness: the frozen server was killed after ${restartMs} ms\n`);
      expect(restartMs).toBeLessThan(60_000);
      await eventually(
        async () => (await m.identity().catch(() => undefined))?.hostname === before.hostname,
        60_000,
        'calls to the restarted server',
      );
      const [pod] = await podsOf(namespace);
      expect(pod?.status?.containerStatuses?.[0]?.restartCount).toBeGreaterThanOrEqual(1);
    } finally {
      await client.close();
    }
  });

  it('loses no call in flight when a pod is scaled down (preStop, draining)', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-drain');
    await using pm = await startClusterPodManager(
      realNodeConfig({ namespace, kubeconfig, modules: { 'pod-probe': { ...probe(), max_replicas: 2 } } }),
    );
    const load = await http(`${pm.url}/modules/pod-probe/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    const registry = pm.app.registry;
    await registry.addReplica(registry.spec('pod-probe'));
    await eventually(() => registry.ready('pod-probe').length === 2, 120_000, 'two ready pods');
    const client = connect(pm.url, { timeoutMs: 60_000 });
    try {
      // Calls on an object go to the pod that holds it: that pod has the calls in flight.
      const m: any = client.module('pod-probe');
      const held = await m.holder();
      const victim: string = await held.where();
      // A remote call is sent when its result is awaited (then): each is awaited at once.
      const calls = Array.from({ length: 12 }, (_, i) => Promise.resolve(held.wait(i, 6_000)));
      await eventually(
        async () => (await registry.replicaStats('pod-probe')).some((s) => s.in_flight === calls.length),
        10_000,
        'the calls in flight on the pod',
      );
      const removing = registry.removeReplica('pod-probe', victim);
      const results = await Promise.allSettled(calls);
      await removing;
      const failed = results.filter((r) => r.status === 'rejected');
      expect(failed, JSON.stringify(failed)).toEqual([]);
      const pods = results.map((r) => (r as PromiseFulfilledResult<{ pod: string }>).value.pod);
      expect(new Set(pods)).toEqual(new Set([victim]));
      await eventually(async () => (await podsOf(namespace)).length === 1, 60_000, 'the pod to go');
      expect((await podsOf(namespace))[0]?.metadata?.name).not.toBe(victim);
    } finally {
      await client.close();
    }
  });

  it('rolls the pods when the dependency list changes', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-roll');
    await using pm = await startClusterPodManager(
      realNodeConfig({
        namespace,
        kubeconfig,
        modules: { 'pod-probe': probe() },
        // The fixture's spec is a tarball URL, which REST changes may name only when allowed.
        server: { package_policy: { allow: ['registry', 'url'] } },
      }),
    );
    const load = await http(`${pm.url}/modules/pod-probe/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    const [before] = await podsOf(namespace);
    const put = await http(`${pm.url}/modules/pod-probe/config`, {
      method: 'PUT',
      body: { ...probe(), dependency: ['is-number@7'] },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    await eventually(
      async () => {
        const pods = await podsOf(namespace);
        return (
          pods.length === 1 && pods[0]?.metadata?.name !== before?.metadata?.name && !!pods[0]?.status?.podIP
        );
      },
      120_000,
      'a pod of the new config, alone',
    );
    const [after] = await podsOf(namespace);
    const installer = after?.spec?.initContainers?.[0]?.env?.find((e) => e.name === 'MODULE_DEPENDENCIES');
    expect(installer?.value).toBe('["is-number@7"]');
    const client = connect(pm.url, { timeoutMs: 120_000 });
    try {
      const m: any = client.module('pod-probe');
      await eventually(
        async () => (await m.identity().catch(() => undefined))?.hostname === after?.metadata?.name,
        120_000,
        'calls served by the new pod',
      );
    } finally {
      await client.close();
    }
  });

  it('runs a Python module on the Python image: pip installs it in the pod, calls reach it', async () => {
    const { namespace, kubeconfig } = await namespaceWithRole('real-python');
    await using pm = await startClusterPodManager(
      realNodeConfig({
        namespace,
        kubeconfig,
        modules: { six: { runtime: 'python', package: 'six==1.16.0' } },
      }),
    );
    const started = Date.now();
    const load = await http(`${pm.url}/modules/six/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    process.stderr.write(`python: pod Ready and loaded in ${Date.now() - started} ms\n`);
    const [pod] = await podsOf(namespace);
    expect(pod?.spec?.containers[0]?.image).toBe('splice-orc-python:0.1.0');
    const client = connect(pm.url, { timeoutMs: 60_000 });
    try {
      const six: any = client.module('six');
      expect(await six.ensure_str('spliced')).toBe('spliced');
    } finally {
      await client.close();
    }
  });
});
