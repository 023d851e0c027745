/**
 * What the pod-manager does to module Deployments over time, against a real kube-apiserver:
 * concurrent first calls create one Deployment (also across two pod-manager replicas), a restarted
 * pod-manager adopts what exists, a config change patches and rolls, and DELETE removes only what
 * the pod-manager created.
 */
import { describe, expect, it } from 'vitest';
import {
  adminApi,
  createNamespace,
  eventually,
  http,
  kubectl,
  MANAGED,
  moduleDeployments,
  modules,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';

const api = adminApi();
describe('module Deployments', () => {
  it('concurrent first calls on two pod-manager replicas create one Deployment', async () => {
    const namespace = await createNamespace('concurrent');
    const logs: Array<Record<string, unknown>> = [];
    await using a = await startClusterPodManager(writeClusterConfig({ namespace }), { logs });
    await using b = await startClusterPodManager(writeClusterConfig({ namespace }), { logs });
    const loads = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        http(`${(i % 2 ? a : b).url}/modules/lodash/load`, { method: 'POST', body: {} }),
      ),
    );
    for (const load of loads) expect(load.status, JSON.stringify(load.body)).toBe(200);
    const deployments = await moduleDeployments(namespace);
    expect(deployments).toHaveLength(1);
    expect(deployments[0]?.spec?.replicas).toBe(1);
    const services = await api.core.listNamespacedService({ namespace, labelSelector: MANAGED });
    expect(services.items).toHaveLength(1);
    // One creation in all (single-flight within a replica); the other replica adopted it (or, had
    // it come late, found its pod ready and needed nothing).
    const said = (msg: string) => logs.filter((l) => l.msg === msg).length;
    expect(said('created module Deployment')).toBe(1);
    expect(said('adopted module Deployment')).toBeLessThanOrEqual(1);
  });

  it('a restarted pod-manager adopts the existing Deployment and its pods', async () => {
    const namespace = await createNamespace('adopt');
    const config = writeClusterConfig({ namespace });
    let before: { uid?: string; pod?: string };
    {
      await using pm = await startClusterPodManager(config);
      const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
      before = {
        uid: (await moduleDeployments(namespace))[0]?.metadata?.uid,
        pod: load.body.replicas[0].pod,
      };
    }
    // Closing the pod-manager leaves the module running in the cluster.
    expect(await moduleDeployments(namespace)).toHaveLength(1);
    await using pm = await startClusterPodManager(config);
    // The informer finds the ready pod: the module is ready without a new start.
    const view = await eventually(
      async () => {
        const v = await http(`${pm.url}/modules/lodash`);
        return v.body.state === 'ready' ? v : undefined;
      },
      10_000,
      'the adopted module to be ready',
    );
    expect(view?.body.replicas.map((r: { pod: string }) => r.pod)).toEqual([before.pod]);
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(200);
    const after = await moduleDeployments(namespace);
    expect(after).toHaveLength(1);
    expect(after[0]?.metadata?.uid).toBe(before.uid);
  });

  it('a pod-manager restarted with a changed config rolls the Deployment it adopts, before any call', async () => {
    const namespace = await createNamespace('resume');
    {
      await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
      await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    }
    const [before] = await moduleDeployments(namespace);
    const changed = { ...modules, lodash: { ...modules.lodash, lib_cpu_req: '400m' } };
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace, modules: changed }));
    const after = await eventually(
      async () => {
        const [d] = await moduleDeployments(namespace);
        return d?.metadata?.generation !== before?.metadata?.generation ? d : undefined;
      },
      10_000,
      'the adopted Deployment to be rolled',
    );
    expect(after?.metadata?.uid).toBe(before?.metadata?.uid);
    expect(after?.spec?.template.spec?.containers[0]?.resources?.requests?.cpu).toBe('400m');
    expect((await http(`${pm.url}/modules/lodash`)).body.calls_served).toBe(0);
  });

  it('a changed module config patches the Deployment, which rolls its pods', async () => {
    const namespace = await createNamespace('roll');
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    const first = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const [before] = await moduleDeployments(namespace);
    const changed = await http(`${pm.url}/modules/lodash/config`, {
      method: 'PUT',
      body: { ...modules.lodash, lib_cpu_req: '300m', lib_cpu_limit: '1' },
    });
    expect(changed.status, JSON.stringify(changed.body)).toBe(200);
    const [after] = await moduleDeployments(namespace);
    expect(after?.metadata?.uid).toBe(before?.metadata?.uid);
    expect(after?.metadata?.generation).toBeGreaterThan(before?.metadata?.generation ?? 0);
    expect(after?.metadata?.annotations?.['splice-orc.dev/config-hash']).not.toBe(
      before?.metadata?.annotations?.['splice-orc.dev/config-hash'],
    );
    expect(after?.spec?.template.spec?.containers[0]?.resources).toMatchObject({
      requests: { cpu: '300m' },
      limits: { cpu: '1' },
    });
    // The rollout replaces the pod; the module stays ready throughout (maxUnavailable 0).
    const oldPod = first.body.replicas[0].pod;
    await eventually(
      async () => {
        const v = await http(`${pm.url}/modules/lodash`);
        return v.body.state === 'ready' && v.body.replicas.every((r: { pod: string }) => r.pod !== oldPod);
      },
      20_000,
      'the rollout',
    );
  });

  it('DELETE removes the Deployment and Service it created, and nothing else', async () => {
    const namespace = await createNamespace('delete');
    // Objects of someone else: one with a name the pod-manager would use.
    const foreign = { metadata: { name: 'someone-elses', labels: { app: 'other' } }, data: { a: 'b' } };
    await api.core.createNamespacedConfigMap({ namespace, body: foreign });
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    await http(`${pm.url}/modules/left-pad/load`, { method: 'POST', body: {} });
    expect(await moduleDeployments(namespace)).toHaveLength(2);

    const removed = await http(`${pm.url}/modules/lodash`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    const left = await moduleDeployments(namespace);
    expect(left.map((d) => d.metadata?.annotations?.['splice-orc.dev/module-name'])).toEqual(['left-pad']);
    const services = await api.core.listNamespacedService({ namespace, labelSelector: MANAGED });
    expect(services.items).toHaveLength(1);
    await api.core.readNamespacedConfigMap({ name: 'someone-elses', namespace });
    const view = await http(`${pm.url}/modules/lodash`);
    expect(view.body.state).toBe('absent');
    expect(view.body.replicas).toEqual([]);
  });

  it('neither adopts nor deletes a Deployment of the same name that splice-orc does not manage', async () => {
    const namespace = await createNamespace('foreign');
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    // Learn the name the module would get, then let someone else take it.
    await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const [ours] = await moduleDeployments(namespace);
    const name = ours?.metadata?.name ?? '';
    await http(`${pm.url}/modules/lodash`, { method: 'DELETE' });
    await eventually(async () => (await moduleDeployments(namespace)).length === 0, 10_000, 'the delete');
    await api.apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name, labels: { app: 'theirs' } },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: 'theirs' } },
          template: {
            metadata: { labels: { app: 'theirs' } },
            spec: { containers: [{ name: 'c', image: 'nginx' }] },
          },
        },
      },
    });
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(502);
    expect(load.body.error.code).toBe('CLUSTER_ERROR');
    expect(load.body.error.message).toMatch(/not managed by splice-orc/);
    await http(`${pm.url}/modules/lodash`, { method: 'DELETE' });
    const theirs = await api.apps.readNamespacedDeployment({ name, namespace });
    expect(theirs.metadata?.labels?.app).toBe('theirs');
  });

  it('scales by replica and reports usage as not available without a metrics API', async () => {
    const namespace = await createNamespace('scale');
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    const backend = pm.app.registry;
    await backend.addReplica(pm.app.registry.spec('lodash'));
    expect(backend.ready('lodash')).toHaveLength(2);
    const [deployment] = await moduleDeployments(namespace);
    expect(deployment?.spec?.replicas).toBe(2);
    // Scale-down removes exactly the pod it names (pod-deletion-cost), not a random one.
    const [keep, victim] = backend.ready('lodash');
    await backend.removeReplica('lodash', victim?.id ?? '');
    await eventually(() => backend.ready('lodash').length === 1, 20_000, 'scale-down');
    expect(backend.ready('lodash').map((r) => r.id)).toEqual([keep?.id]);
    const view = await http(`${pm.url}/modules/lodash`);
    expect(view.body.usage[0].unavailable).toMatch(/metrics API \(metrics\.k8s\.io\) not available/);
  });

  it('renews its pod watch without piling up connections, and still sees new pods', async () => {
    const namespace = await createNamespace('renew');
    const baseline = await podWatches();
    {
      const config = writeClusterConfig({ namespace, kubernetes: { watch_renew_s: 0.2 } });
      await using pm = await startClusterPodManager(config);
      // About fifteen renewals.
      await new Promise((r) => setTimeout(r, 3_000));
      const open = await podWatches();
      // Its own watch is open (at a renewal, briefly two), and no more.
      expect(open).toBeGreaterThanOrEqual(baseline + 1);
      expect(open).toBeLessThanOrEqual(baseline + 2);
      const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
      expect(load.status).toBe(200);
    }
    // Closed: none of its watches stays open.
    await eventually(async () => (await podWatches()) <= baseline, 10_000, 'the watches to close');
  });
});

/** Watches of pods in single namespaces open at the API server (its own gauge). */
async function podWatches(): Promise<number> {
  const metrics = await kubectl(['get', '--raw', '/metrics']);
  let open = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('apiserver_longrunning_requests{')) continue;
    if (
      line.includes('resource="pods"') &&
      line.includes('scope="namespace"') &&
      line.includes('verb="WATCH"')
    ) {
      open += Number(line.split(' ').at(-1));
    }
  }
  return open;
}
