/**
 * `splice-orc init [namespace]` (jac-splice-orc's `jac orc_initialize`): server-side applies the
 * pod-manager's objects (kube-manifests.ts), so running it again updates them in place; creates
 * the auth Secret once with a random token; waits until the pod-manager is ready; returns its URL.
 */
import { randomBytes } from 'node:crypto';
import { PatchStrategy } from '@kubernetes/client-node';
import { createKubeApi } from '../backends/kube-api.js';
import { kubeRequest } from '../backends/kube-errors.js';
import { AUTH_SECRET, type ManifestOptions, POD_MANAGER, podManagerManifests } from './kube-manifests.js';

/** Options of {@link initCluster}. */
export interface InitOptions extends ManifestOptions {
  kubeconfig?: string | undefined;
  /** Longest wait for the pod-manager to become ready, ms. */
  timeoutMs: number;
  /** Progress lines. */
  log: (line: string) => void;
}

/** What `init` set up. */
export interface InitResult {
  url: string;
  /** True when this run created the auth Secret. */
  createdSecret: boolean;
}

const FIELD_MANAGER = 'splice-orc-init';

/** Applies the manifests and waits for the pod-manager's Deployment to have a ready pod. */
export async function initCluster(o: InitOptions): Promise<InitResult> {
  const api = createKubeApi({ kubeconfig: o.kubeconfig, timeoutMs: 15_000 });
  for (const object of podManagerManifests(o)) {
    const what = `${object.kind} ${object.metadata?.name}`;
    await kubeRequest(
      `apply ${what}`,
      api.objects.patch(object, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply),
    );
    o.log(`applied ${what}`);
  }
  const createdSecret = await ensureSecret(api, o.namespace);
  o.log(createdSecret ? `created Secret ${AUTH_SECRET} with a new token` : `kept Secret ${AUTH_SECRET}`);
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const deployment = await kubeRequest(
      `read Deployment ${POD_MANAGER}`,
      api.apps.readNamespacedDeployment({ name: POD_MANAGER, namespace: o.namespace }),
    );
    const generation = deployment.metadata?.generation ?? 0;
    const status = deployment.status;
    // As `kubectl rollout status` judges it: every pod runs the new template and is available.
    const wanted = deployment.spec?.replicas ?? 1;
    const rolledOut =
      (status?.observedGeneration ?? 0) >= generation &&
      (status?.updatedReplicas ?? 0) >= wanted &&
      (status?.replicas ?? 0) === (status?.updatedReplicas ?? 0) &&
      (status?.availableReplicas ?? 0) >= wanted;
    if (rolledOut) break;
    if (Date.now() > deadline) {
      throw new Error(
        `the pod-manager is not ready after ${o.timeoutMs} ms: kubectl -n ${o.namespace} describe deployment ${POD_MANAGER}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return { url: `http://${POD_MANAGER}.${o.namespace}.svc:8000`, createdSecret };
}

/** Creates the token Secret unless it exists; an existing token is never replaced. */
async function ensureSecret(api: ReturnType<typeof createKubeApi>, namespace: string): Promise<boolean> {
  const body = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: AUTH_SECRET, namespace, labels: { 'app.kubernetes.io/part-of': 'splice-orc' } },
    type: 'Opaque',
    stringData: { token: randomBytes(24).toString('hex') },
  };
  // 409: it exists already.
  const created = await kubeRequest(
    `create Secret ${AUTH_SECRET}`,
    api.core.createNamespacedSecret({ namespace, body, fieldManager: FIELD_MANAGER }),
    409,
  );
  return created !== undefined;
}
