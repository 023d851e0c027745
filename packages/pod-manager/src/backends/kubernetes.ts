/**
 * The Kubernetes backend: each module is a Deployment and a headless Service in the configured
 * namespace (see kube-objects.ts). The pod-manager watches the pods it manages with an informer
 * (one list, then a watch; never a request per call), routes each call to a ready pod by its IP,
 * and the cluster restarts crashed servers. Creation is single-flight per module and idempotent
 * across pod-manager replicas and restarts: an existing Deployment is adopted, a changed config
 * patches it (a rolling update), and only objects labelled as splice-orc's are ever deleted.
 * Closing the backend leaves the Deployments running, for the next pod-manager to adopt.
 */
import {
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import type {
  Backend,
  ModuleState,
  ModuleStatus,
  ReadyReplica,
  ReplicaUsage,
  StartOptions,
} from './backend.js';
import { createKubeApi, type KubeApi, serviceErrorFromKube, unlessNotFound } from './kube-api.js';
import {
  CONFIG_HASH_ANNOTATION,
  deploymentFor,
  type KubeObjectOptions,
  MANAGED_BY,
  MANAGED_SELECTOR,
  MODULE_NAME_ANNOTATION,
  objectNameFor,
  serviceFor,
} from './kube-objects.js';
import { failureOf, isReady, replicaFromPod, restartsOf } from './kube-pods.js';
import { usageFromPodMetrics } from './kube-usage.js';

/** Options of {@link createKubernetesBackend}. */
export interface KubernetesBackendOptions extends KubeObjectOptions {
  /** A kubeconfig file; default $KUBECONFIG, ~/.kube/config, or the pod's service account. */
  kubeconfig?: string | undefined;
  /** Longest one API request may take, ms. Default 10 000. */
  requestTimeoutMs?: number;
  log: FastifyBaseLogger;
  /** Called when an endpoint stops being served, so clients of it can be dropped. */
  onEndpointGone?: (endpoint: string) => void;
}

const FIELD_MANAGER = 'splice-orc';
/** Pods scale-down picks are deleted first by their ReplicaSet (a Kubernetes annotation). */
const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';
/** How often the Deployment is read while a start waits (pods may never be created: quota, admission). */
const DEPLOYMENT_CHECK_MS = 2_000;

/** Creates the Kubernetes backend; it starts watching module pods at once. */
export function createKubernetesBackend(options: KubernetesBackendOptions): Backend {
  return new KubernetesBackend(options);
}

class KubernetesBackend implements Backend {
  readonly #o: KubernetesBackendOptions;
  readonly #api: KubeApi;
  readonly #informer;
  #synced: Promise<void>;
  /** True once the pods have been listed: from then on the informer keeps the cache current. */
  #listed = false;
  #listError: unknown;
  /** Module name -> its pods, kept by the informer. */
  #pods = new Map<string, Map<string, V1Pod>>();
  /** Module name -> ready replicas, recomputed on every pod event (read on every call). */
  #ready = new Map<string, ReadyReplica[]>();
  #ensuring = new Map<string, Promise<void>>();
  #starting = new Set<string>();
  #stopping = new Set<string>();
  #listeners = new Set<() => void>();
  #closed = false;

  constructor(options: KubernetesBackendOptions) {
    this.#o = options;
    this.#api = createKubeApi({
      kubeconfig: options.kubeconfig,
      timeoutMs: options.requestTimeoutMs ?? 10_000,
    });
    const ns = options.namespace;
    this.#informer = makeInformer<V1Pod>(
      this.#api.config,
      `/api/v1/namespaces/${ns}/pods`,
      async () => {
        try {
          const list = await this.#api.core.listNamespacedPod({
            namespace: ns,
            labelSelector: MANAGED_SELECTOR,
          });
          this.#listed = true;
          return list;
        } catch (error) {
          this.#listError = error;
          throw error;
        }
      },
      MANAGED_SELECTOR,
    );
    this.#informer.on('add', (pod) => this.#onPod(pod));
    this.#informer.on('update', (pod) => this.#onPod(pod));
    this.#informer.on('delete', (pod) => this.#onPod(pod, true));
    this.#informer.on('error', (error) => {
      if (this.#closed || !this.#listed) return;
      // The informer stops on an error; it lists again (catching up on what it missed) after a pause.
      options.log.warn({ err: error }, 'kubernetes pod watch failed; restarting in 2 s');
      setTimeout(() => {
        if (!this.#closed) this.#informer.start().catch(() => undefined);
      }, 2_000).unref();
    });
    this.#synced = this.#list();
  }

  /** Lists and starts watching the module pods; a failure is retried by the next {@link #sync}. */
  #list(): Promise<void> {
    this.#listError = undefined;
    // start() resolves even when the list fails (the informer reports that as an error event).
    const listing = this.#informer.start().then(() => {
      if (!this.#listed) throw this.#listError ?? new Error('the pods were not listed');
    });
    listing.catch((error) => this.#o.log.error({ err: error }, 'cannot list module pods'));
    return listing;
  }

  async start(spec: ModuleSpec, options: StartOptions = {}): Promise<void> {
    await this.#sync();
    if (this.ready(spec.name).length > 0) return;
    this.#starting.add(spec.name);
    try {
      await this.#ensure(spec);
      await this.#waitFor(spec.name, 1, options.signal);
    } finally {
      this.#starting.delete(spec.name);
    }
  }

  ready(name: string): ReadyReplica[] {
    return this.#ready.get(name) ?? [];
  }

  async prepare(spec: ModuleSpec): Promise<void> {
    deployable(spec);
  }

  async reconfigure(spec: ModuleSpec): Promise<void> {
    deployable(spec);
    const existing = await this.#readDeployment(spec.name);
    if (existing) await this.#roll(spec, existing);
  }

  async addReplica(spec: ModuleSpec): Promise<void> {
    await this.#sync();
    const existing = await this.#readDeployment(spec.name);
    if (!existing) return this.start(spec);
    const target = this.ready(spec.name).length + 1;
    await this.#scale(spec.name, Math.max(target, (existing.spec?.replicas ?? 0) + 1));
    await this.#waitFor(spec.name, target);
  }

  async removeReplica(name: string, id: string): Promise<void> {
    const pod = this.#pods.get(name)?.get(id);
    const existing = await this.#readDeployment(name);
    if (!pod || !existing) return;
    const ns = this.#o.namespace;
    // The ReplicaSet removes the pod of lowest deletion cost first: this one, which is idle.
    await this.#api.core
      .patchNamespacedPod(
        { name: id, namespace: ns, body: { metadata: { annotations: { [DELETION_COST]: '-1000' } } } },
        mergePatch(),
      )
      .catch((error) => {
        throw serviceErrorFromKube(error, `mark pod ${id} for removal`);
      });
    await this.#scale(name, Math.max(0, (existing.spec?.replicas ?? 1) - 1));
  }

  async stop(name: string): Promise<void> {
    const objectName = objectNameFor(name);
    const ns = this.#o.namespace;
    this.#stopping.add(name);
    try {
      const deployment = await this.#readDeployment(name);
      if (deployment && isOurs(deployment)) {
        await unlessNotFound(
          this.#api.apps.deleteNamespacedDeployment({
            name: objectName,
            namespace: ns,
            propagationPolicy: 'Background',
          }),
        ).catch((error) => {
          throw serviceErrorFromKube(error, `delete Deployment ${objectName}`);
        });
      }
      const service = await unlessNotFound(
        this.#api.core.readNamespacedService({ name: objectName, namespace: ns }),
      ).catch((error) => {
        throw serviceErrorFromKube(error, `read Service ${objectName}`);
      });
      if (service && isOurs(service)) {
        await unlessNotFound(
          this.#api.core.deleteNamespacedService({ name: objectName, namespace: ns }),
        ).catch((error) => {
          throw serviceErrorFromKube(error, `delete Service ${objectName}`);
        });
      }
      // Like the local backend, stop resolves once the servers are gone (their calls drained).
      await this.#until(() => (this.#pods.get(name)?.size ?? 0) === 0, this.#o.graceMs + 30_000).catch(() => {
        this.#o.log.warn({ module: name }, 'module pods still terminating');
      });
    } finally {
      this.#stopping.delete(name);
    }
  }

  status(name: string): ModuleStatus {
    const pods = [...(this.#pods.get(name)?.values() ?? [])];
    const replicas = pods.map(replicaFromPod);
    const restarts = pods.reduce((n, p) => n + restartsOf(p), 0);
    const order: ModuleState[] = ['absent', 'failed', 'stopping', 'installing', 'starting', 'ready'];
    let state: ModuleState = this.#stopping.has(name)
      ? 'stopping'
      : this.#starting.has(name)
        ? 'starting'
        : 'absent';
    for (const r of replicas) {
      const s: ModuleState = r.state === 'draining' ? 'stopping' : r.state;
      if (order.indexOf(s) > order.indexOf(state)) state = s;
    }
    const failed = replicas.find((r) => r.state === 'failed');
    if (failed && state !== 'ready') state = 'failed';
    return { state, replicas, restarts, reason: state === 'failed' ? failed?.reason : undefined };
  }

  async reportUnreachable(name: string, endpoint: string): Promise<boolean> {
    return !this.ready(name).some((r) => r.endpoint === endpoint);
  }

  async usage(name: string): Promise<ReplicaUsage[]> {
    const pods = [...(this.#pods.get(name)?.keys() ?? [])];
    return usageFromPodMetrics(this.#api, this.#o.namespace, pods);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#informer.stop();
  }

  /** Creates the module's objects, or adopts and (if its config changed) rolls existing ones. */
  #ensure(spec: ModuleSpec): Promise<void> {
    let pending = this.#ensuring.get(spec.name);
    if (!pending) {
      pending = this.#create(spec).finally(() => this.#ensuring.delete(spec.name));
      this.#ensuring.set(spec.name, pending);
    }
    return pending;
  }

  async #create(spec: ModuleSpec): Promise<void> {
    deployable(spec);
    const ns = this.#o.namespace;
    const desired = deploymentFor(spec, Math.max(1, spec.minReplicas), this.#o);
    let existing = await this.#readDeployment(spec.name);
    if (!existing) {
      try {
        await this.#api.apps.createNamespacedDeployment({
          namespace: ns,
          body: desired,
          fieldManager: FIELD_MANAGER,
        });
        this.#o.log.info(
          { module: spec.name, deployment: desired.metadata?.name },
          'created module Deployment',
        );
      } catch (error) {
        // Another pod-manager created it first: adopt theirs.
        if (statusOf(error) !== 409)
          throw serviceErrorFromKube(error, `create Deployment ${desired.metadata?.name}`);
        existing = await this.#readDeployment(spec.name);
      }
    }
    if (existing) {
      if (!isOurs(existing)) {
        throw new ServiceError(
          'CLUSTER_ERROR',
          `a Deployment named ${existing.metadata?.name} exists in ${ns} and is not managed by splice-orc: rename it or remove it`,
        );
      }
      this.#o.log.info(
        { module: spec.name, deployment: existing.metadata?.name },
        'adopted module Deployment',
      );
      await this.#roll(spec, existing);
      if ((existing.spec?.replicas ?? 0) === 0) await this.#scale(spec.name, Math.max(1, spec.minReplicas));
    }
    const service = serviceFor(spec, this.#o);
    await this.#api.core
      .createNamespacedService({ namespace: ns, body: service, fieldManager: FIELD_MANAGER })
      .catch((error) => {
        if (statusOf(error) !== 409)
          throw serviceErrorFromKube(error, `create Service ${service.metadata?.name}`);
      });
  }

  /**
   * Patches the pod template when the config hash differs: the cluster rolls the pods over. The
   * patch tests the old hash, so two pod-managers changing it at once cannot overwrite each other.
   */
  async #roll(spec: ModuleSpec, existing: V1Deployment): Promise<void> {
    const desired = deploymentFor(spec, existing.spec?.replicas ?? 1, this.#o);
    const want = desired.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    const have = existing.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    if (want === have) return;
    const path = `/metadata/annotations/${CONFIG_HASH_ANNOTATION.replace('/', '~1')}`;
    const body = [
      ...(have === undefined ? [] : [{ op: 'test', path, value: have }]),
      { op: have === undefined ? 'add' : 'replace', path, value: want },
      { op: 'replace', path: '/spec/template', value: desired.spec?.template },
    ];
    const name = objectNameFor(spec.name);
    await this.#api.apps
      .patchNamespacedDeployment(
        { name, namespace: this.#o.namespace, body, fieldManager: FIELD_MANAGER },
        jsonPatch(),
      )
      .catch((error) => {
        // 422 from the test op: another pod-manager rolled it meanwhile; the newer config wins.
        if (statusOf(error) === 422) return;
        throw serviceErrorFromKube(error, `update Deployment ${name}`);
      });
    this.#o.log.info(
      { module: spec.name, deployment: name, from: have, to: want },
      'rolling module Deployment',
    );
  }

  async #scale(name: string, replicas: number): Promise<void> {
    const objectName = objectNameFor(name);
    await this.#api.apps
      .patchNamespacedDeployment(
        {
          name: objectName,
          namespace: this.#o.namespace,
          body: { spec: { replicas } },
          fieldManager: FIELD_MANAGER,
        },
        mergePatch(),
      )
      .catch((error) => {
        throw serviceErrorFromKube(error, `scale Deployment ${objectName} to ${replicas}`);
      });
  }

  #readDeployment(name: string): Promise<V1Deployment | undefined> {
    const objectName = objectNameFor(name);
    return unlessNotFound(
      this.#api.apps.readNamespacedDeployment({ name: objectName, namespace: this.#o.namespace }),
    ).catch((error) => {
      throw serviceErrorFromKube(error, `read Deployment ${objectName}`);
    });
  }

  /**
   * Resolves once `count` pods of the module are ready; rejects at once when one cannot start
   * (with the cluster's reason), or when the Deployment reports that pods cannot be created.
   */
  async #waitFor(name: string, count: number, signal?: AbortSignal): Promise<void> {
    let checkedAt = Date.now();
    let deploymentFailure: string | undefined;
    await this.#until(
      () => {
        if (this.ready(name).length >= count) return true;
        const failure =
          [...(this.#pods.get(name)?.values() ?? [])].map(failureOf).find(Boolean) ?? deploymentFailure;
        if (failure) throw new ServiceError('POD_START_FAILED', `module '${name}' cannot start: ${failure}`);
        if (Date.now() - checkedAt >= DEPLOYMENT_CHECK_MS) {
          checkedAt = Date.now();
          void this.#deploymentFailure(name).then((why) => {
            deploymentFailure = why;
          });
        }
        return false;
      },
      this.#o.startTimeoutMs,
      signal,
      DEPLOYMENT_CHECK_MS,
    ).catch((error) => {
      if (error instanceof ServiceError) throw error;
      if (signal?.aborted) throw signal.reason;
      throw new ServiceError(
        'START_TIMEOUT',
        `module '${name}' has no ready pod after ${this.#o.startTimeoutMs} ms (server.start_timeout_ms)`,
      );
    });
  }

  /** A condition of the Deployment that says its pods cannot be created or will not progress. */
  async #deploymentFailure(name: string): Promise<string | undefined> {
    const deployment = await this.#readDeployment(name).catch(() => undefined);
    for (const c of deployment?.status?.conditions ?? []) {
      if (c.type === 'ReplicaFailure' && c.status === 'True') return `${c.reason}: ${c.message}`;
      if (c.type === 'Progressing' && c.status === 'False') return `${c.reason}: ${c.message}`;
    }
    return undefined;
  }

  /**
   * Resolves when `check` returns true (checked on every pod event and every `tickMs`), rejects
   * with what it throws, on abort, or after `timeoutMs`.
   */
  #until(check: () => boolean, timeoutMs: number, signal?: AbortSignal, tickMs = 1_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (error?: unknown) => {
        this.#listeners.delete(listener);
        clearTimeout(timer);
        clearInterval(ticker);
        signal?.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const listener = () => {
        try {
          if (check()) done();
        } catch (error) {
          done(error);
        }
      };
      const onAbort = () => done(signal?.reason ?? new Error('aborted'));
      const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
      const ticker = setInterval(listener, tickMs);
      signal?.addEventListener('abort', onAbort);
      this.#listeners.add(listener);
      listener();
    });
  }

  async #sync(): Promise<void> {
    const synced = this.#synced;
    await synced.catch((error) => {
      // Listing again on the next call: a Role fixed meanwhile takes effect without a restart.
      if (this.#synced === synced && !this.#closed) this.#synced = this.#list();
      throw serviceErrorFromKube(error, `list pods in namespace ${this.#o.namespace}`);
    });
  }

  #onPod(pod: V1Pod, deleted = false): void {
    const module = pod.metadata?.annotations?.[MODULE_NAME_ANNOTATION];
    const podName = pod.metadata?.name;
    if (!module || !podName) return;
    let pods = this.#pods.get(module);
    if (!pods) {
      pods = new Map();
      this.#pods.set(module, pods);
    }
    if (deleted) pods.delete(podName);
    else pods.set(podName, pod);
    if (pods.size === 0) this.#pods.delete(module);
    const before = this.#ready.get(module) ?? [];
    const after = [...pods.values()]
      .filter(isReady)
      .map((p) => ({ id: p.metadata?.name ?? '', endpoint: endpointFor(p) }));
    this.#ready.set(module, after);
    for (const gone of before) {
      if (!after.some((r) => r.endpoint === gone.endpoint)) this.#o.onEndpointGone?.(gone.endpoint);
    }
    for (const listener of [...this.#listeners]) listener();
  }
}

function endpointFor(pod: V1Pod): string {
  return replicaFromPod(pod).endpoint ?? '';
}

/** Only objects labelled as splice-orc's are adopted or deleted. */
function isOurs(object: { metadata?: { labels?: Record<string, string> } }): boolean {
  return object.metadata?.labels?.[MANAGED_BY] === 'splice-orc';
}

/** A `file:` package exists only on the pod-manager's disk: a cluster needs an image holding it. */
function deployable(spec: ModuleSpec): void {
  if (spec.package.startsWith('file:') && spec.image === undefined) {
    throw new ServiceError(
      'INSTALL_FAILED',
      `module '${spec.name}' is a local folder (${spec.package}), which pods cannot install: build an image holding it and set "image" in its module_config`,
    );
  }
}

function statusOf(error: unknown): number | undefined {
  return (error as { code?: unknown }).code as number | undefined;
}

/** Per-request options that send the body as a JSON merge patch. */
function mergePatch() {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
}

/** Per-request options that send the body as a JSON patch (a list of operations). */
function jsonPatch() {
  return setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
}
