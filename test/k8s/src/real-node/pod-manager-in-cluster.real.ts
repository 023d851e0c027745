/**
 * The pod-manager itself as the repository deploys it: `kubectl apply -k k8s/` (namespace
 * splice-orc, the product image loaded into the real node's containerd), its token in the Secret
 * `splice-orc init` would make. It runs in a pod of the real node with its service account, talks
 * to the API server through the in-cluster address, and starts module pods beside it; the test
 * reaches it at its pod IP.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connect } from '@splice-orc/client';
import { AUTH_SECRET, POD_MANAGER } from '@splice-orc/pod-manager/kubernetes';
import { describe, expect, it } from 'vitest';
import { adminApi, eventually, http, kubectl, repoRoot } from '../harness.js';

const namespace = 'splice-orc';

describe('the pod-manager deployed from k8s/', () => {
  it('runs on the real node with its Role and serves a call through a module pod it starts', async () => {
    const api = adminApi();
    const token = randomBytes(24).toString('hex');
    const started = Date.now();
    await kubectl(['apply', '-f', join(repoRoot, 'k8s/namespace.yaml')]);
    await api.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: AUTH_SECRET }, stringData: { token } },
    });
    await kubectl(['apply', '-k', join(repoRoot, 'k8s')]);
    const pod = await eventually(
      async () => {
        const { items } = await api.core.listNamespacedPod({
          namespace,
          labelSelector: `app.kubernetes.io/name=${POD_MANAGER}`,
        });
        const ready = items.find((p) =>
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready?.status?.podIP ? ready : undefined;
      },
      120_000,
      'the pod-manager pod to be Ready',
    );
    process.stderr.write(`in-cluster pod-manager Ready in ${Date.now() - started} ms\n`);
    expect(pod?.spec?.nodeName).toBe('splice-real-node');
    const url = `http://${pod?.status?.podIP}:8000`;
    expect((await http(`${url}/healthz`)).status).toBe(200);
    expect((await http(`${url}/modules`)).status).toBe(401);

    const client = connect(url, { token, timeoutMs: 180_000 });
    try {
      const lodash: any = client.module('lodash');
      expect(await lodash.chunk([1, 2, 3], 2)).toEqual([[1, 2], [3]]);
    } finally {
      await client.close();
    }
    const { items } = await api.core.listNamespacedPod({
      namespace,
      labelSelector: 'app.kubernetes.io/managed-by=splice-orc',
    });
    expect(items.map((p) => p.spec?.nodeName)).toEqual(['splice-real-node']);
  });
});
