/**
 * Calls through module pods: a stand-in kubelet (kubelet.ts) runs the real module-server at each
 * pod's IP and reports its status to the real API server, so calls go client -> pod-manager -> pod
 * IP over gRPC, as in a cluster. Also: waiting for readiness, and failures a kubelet reports
 * (image pull, crash loop, failed install) failing the waiting call fast with their reason.
 */
import { inspect } from 'node:util';
import type { V1PodStatus } from '@kubernetes/client-node';
import { connect } from '@splice-orc/client';
import { createModuleClient, encode } from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import { createNamespace, eventually, http, startClusterPodManager, writeClusterConfig } from './harness.js';
import { MANUAL, TestKubelet } from './kubelet.js';

/** The calc fixture as a prebuilt image holds it, in pods the test kubelet runs. */
const calcConfig = (namespace: string, module: object = {}) =>
  writeClusterConfig({
    namespace,
    modules: { calc: { package: 'calc@1', image: 'registry.test/calc:1', ...module } },
    kubernetes: { pod_labels: MANUAL },
    server: { start_timeout_ms: 20_000 },
  });

const views = (url: string) => http(`${url}/modules/calc`).then((r) => r.body);

describe('module pods serving calls', () => {
  it('waits for the pod to be ready, then serves calls and references through its IP', async () => {
    const namespace = await createNamespace('serve');
    await using kubelet = new TestKubelet(namespace, () => 'ignore');
    await using pm = await startClusterPodManager(calcConfig(namespace));
    let settled = false;
    const load = http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} }).finally(() => {
      settled = true;
    });
    // The Deployment and its pod exist, but nothing runs the pod yet: the call keeps waiting.
    await eventually(async () => (await views(pm.url)).replicas.length === 1, 10_000, 'a pod');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(settled, JSON.stringify(settled && (await load).body)).toBe(false);
    expect((await views(pm.url)).state).toBe('starting');
    kubelet.action = () => 'serve';
    const loaded = await load;
    expect(loaded.status, JSON.stringify(loaded.body)).toBe(200);
    const [replica] = loaded.body.replicas;
    expect(replica.endpoint).toMatch(/^127\.78\.0\.\d+:50051$/);

    const client = connect(pm.url, { timeoutMs: 10_000 });
    try {
      const calc: any = client.module('calc');
      expect(await calc.add(2, 3)).toBe(5);
      const m = await calc.matrix([
        [1, 2],
        [3, 4],
      ]);
      // A reference names the pod that holds its object.
      expect(inspect(m)).toContain(`@${replica.pod}]`);
      expect(await calc.det(m)).toBe(-2);
      // A function of the app, called back through the pod's callback endpoint (its own port).
      expect(await calc.mapWith([1, 2], (x: number) => x + 1)).toEqual([2, 3]);
    } finally {
      await client.close();
    }
    // The pod's gRPC port takes calls only with the secret of its pod template; health stays open.
    const direct = createModuleClient(replica.endpoint);
    const program = encode({
      v: 1,
      session: 'x',
      ops: [{ op: 'call', target: null, path: ['add'], args: [1, 2] }],
    });
    await expect(direct.invoke(program, { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(await direct.health({ timeoutMs: 2_000 })).toBe('SERVING');
    direct.close();
  });

  it('routes calls on a reference to the pod holding it and spreads other calls over the pods', async () => {
    const namespace = await createNamespace('route');
    await using kubelet = new TestKubelet(namespace);
    await using pm = await startClusterPodManager(calcConfig(namespace));
    await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} });
    const backend = pm.app.registry;
    await backend.addReplica(pm.app.registry.spec('calc'));
    expect(kubelet.running).toHaveLength(2);
    const pods = backend.ready('calc').map((r) => r.id);
    expect(pods).toHaveLength(2);

    const client = connect(pm.url, { timeoutMs: 10_000 });
    try {
      const calc: any = client.module('calc');
      const matrices = await Promise.all(Array.from({ length: 8 }, (_, i) => calc.matrix([[i, 1]])));
      const holders = matrices.map((m) => /@([\w-]+)\]$/.exec(inspect(m))?.[1]);
      // Spread: both pods hold some of the objects.
      expect(new Set(holders)).toEqual(new Set(pods));
      // Affinity: every call on a reference reaches its holder (another pod would not know it).
      const sizes = await Promise.all(matrices.map((m) => m.scale(2).get(0, 1)));
      expect(sizes).toEqual(Array(8).fill(2));
    } finally {
      await client.close();
    }
  });

  it('stops routing to a pod whose server crashed, and serves from the others', async () => {
    const namespace = await createNamespace('crash');
    await using kubelet = new TestKubelet(namespace);
    await using pm = await startClusterPodManager(calcConfig(namespace));
    await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} });
    const backend = pm.app.registry;
    await backend.addReplica(pm.app.registry.spec('calc'));
    const [gone, stays] = backend.ready('calc');
    await kubelet.crash(gone?.id ?? '');
    await eventually(
      () => backend.ready('calc').length === 1,
      10_000,
      'the crashed pod to leave the ready set',
    );
    expect(backend.ready('calc')[0]?.id).toBe(stays?.id);
    const client = connect(pm.url, { timeoutMs: 10_000 });
    try {
      const calc: any = client.module('calc');
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => calc.add(i, 1)));
      expect(answers).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    } finally {
      await client.close();
    }
  });

  const failures: Array<[string, V1PodStatus, RegExp]> = [
    [
      'an image that cannot be pulled',
      {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'module-server',
            image: 'registry.test/calc:1',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: {
              waiting: {
                reason: 'ImagePullBackOff',
                message: 'Back-off pulling image "registry.test/calc:1"',
              },
            },
          },
        ],
      },
      /module-server container: ImagePullBackOff: Back-off pulling image "registry\.test\/calc:1"/,
    ],
    [
      'a server that crashes on start',
      {
        phase: 'Running',
        containerStatuses: [
          {
            name: 'module-server',
            image: 'registry.test/calc:1',
            imageID: '',
            ready: false,
            restartCount: 3,
            state: {
              waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container' },
            },
            lastState: {
              terminated: { exitCode: 1, reason: 'Error', message: 'SyntaxError: Unexpected token' },
            },
          },
        ],
      },
      /CrashLoopBackOff: back-off 40s .*\(last exit 1 Error: SyntaxError: Unexpected token\)/,
    ],
    [
      'an install that fails',
      {
        phase: 'Pending',
        initContainerStatuses: [
          {
            name: 'install',
            image: 'splice-orc:test',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: {
              terminated: { exitCode: 2, reason: 'Error', message: 'npm error 404 Not Found - calc@1' },
            },
          },
        ],
      },
      /install \(init container\): exited with 2: npm error 404 Not Found/,
    ],
  ];
  it.each(failures)('fails the waiting call fast with the reason of %s', async (_what, status, reason) => {
    const namespace = await createNamespace('fail');
    await using _kubelet = new TestKubelet(namespace, () => ({ fail: status }));
    await using pm = await startClusterPodManager(calcConfig(namespace));
    const started = Date.now();
    const load = await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(502);
    expect(load.body.error.code).toBe('POD_START_FAILED');
    expect(load.body.error.message).toMatch(reason);
    expect(Date.now() - started).toBeLessThan(10_000);
    const view = await views(pm.url);
    expect(view.state).toBe('failed');
    expect(view.reason).toMatch(reason);
  });
});
