/**
 * Regressions found in review, against a real kube-apiserver: a config the cluster refuses is not
 * kept; scale-down during a rollout never removes the serving pod; concurrent scale-ups each add
 * a pod; a start waiting on a module that is deleted ends at once.
 */
import { describe, expect, it } from 'vitest';
import {
  adminApi,
  createNamespace,
  eventually,
  http,
  moduleDeployments,
  modules,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';
import { MANUAL, TestKubelet } from './kubelet.js';

const _api = adminApi();
describe('rollouts and scaling', () => {
  it('keeps the old config when the cluster refuses the new pod template', async () => {
    const namespace = await createNamespace('refused');
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const before = (await moduleDeployments(namespace))[0];
    // A memory limit below the request is invalid: the API server answers 422.
    const put = await http(`${pm.url}/modules/lodash/config`, {
      method: 'PUT',
      body: { ...modules.lodash, lib_mem_size_req: '200Mi', lib_mem_limit: '64Mi' },
    });
    expect(put.status).toBe(502);
    expect(put.body.error.code).toBe('CLUSTER_ERROR');
    expect(put.body.error.message).toMatch(/must be less than or equal to memory limit/);
    expect((await http(`${pm.url}/modules/lodash/config`)).body.lib_mem_size_req).toBe('100Mi');
    const after = (await moduleDeployments(namespace))[0];
    expect(after?.metadata?.generation).toBe(before?.metadata?.generation);
  });

  it('does not scale down while a new config crash-loops beside the serving pod', async () => {
    const namespace = await createNamespace('rollout');
    let firstHash: string | undefined;
    await using kubelet = new TestKubelet(namespace, (pod) => {
      const hash = pod.metadata?.annotations?.['splice-orc.dev/config-hash'];
      firstHash ??= hash;
      if (hash === firstHash) return 'serve';
      return {
        fail: {
          phase: 'Running',
          containerStatuses: [
            {
              name: 'module-server',
              image: 'registry.test/calc:2',
              imageID: '',
              ready: false,
              restartCount: 2,
              state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 20s' } },
            },
          ],
        },
      };
    });
    const calc = { package: 'calc@1', image: 'registry.test/calc:1' };
    await using pm = await startClusterPodManager(
      writeClusterConfig({ namespace, modules: { calc }, kubernetes: { pod_labels: MANUAL } }),
    );
    await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} });
    const [serving] = pm.app.registry.ready('calc');
    const put = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: { ...calc, image: 'registry.test/calc:2' },
    });
    expect(put.status).toBe(200);
    const backend = pm.app.registry;
    const failed = await eventually(
      () => backend.status('calc').replicas.find((r) => r.state === 'failed'),
      10_000,
      'the new pod to fail',
    );
    // What the lifecycle loop does with a failed replica while another serves.
    await backend.removeReplica('calc', failed?.id ?? '');
    await backend.removeReplica('calc', serving?.id ?? '');
    expect((await moduleDeployments(namespace))[0]?.spec?.replicas).toBe(1);
    expect(backend.ready('calc').map((r) => r.id)).toEqual([serving?.id]);
    expect(kubelet.running).toContain(serving?.id);
  });

  it('adds one pod per concurrent scale-up', async () => {
    const namespace = await createNamespace('scaleup');
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const { backend, spec } = { backend: pm.app.registry, spec: pm.app.registry.spec('lodash') };
    await Promise.all([backend.addReplica(spec), backend.addReplica(spec), backend.addReplica(spec)]);
    expect((await moduleDeployments(namespace))[0]?.spec?.replicas).toBe(4);
    await eventually(() => backend.ready('lodash').length === 4, 10_000, 'four ready pods');
  });

  it('ends a start at once when the module is deleted meanwhile', async () => {
    const namespace = await createNamespace('stopped');
    await using _kubelet = new TestKubelet(namespace, () => 'ignore');
    const calc = { package: 'calc@1', image: 'registry.test/calc:1' };
    await using pm = await startClusterPodManager(
      writeClusterConfig({ namespace, modules: { calc }, kubernetes: { pod_labels: MANUAL } }),
    );
    const load = http(`${pm.url}/modules/calc/load`, { method: 'POST', body: {} });
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.replicas.length === 1,
      10_000,
      'a pod',
    );
    const started = Date.now();
    const removed = await http(`${pm.url}/modules/calc`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    const answer = await load;
    expect(answer.status).toBe(503);
    expect(answer.body.error.code).toBe('MODULE_STOPPED');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
