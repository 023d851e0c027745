/**
 * The Kubernetes backend: each module is a Deployment and a headless Service in the configured
 * namespace (see kube-objects.ts). The pod-manager watches the pods it manages (kube-watch.ts:
 * one list, then a watch; never a request per call), routes each call to a ready pod by its IP,
 * and the cluster restarts crashed servers. Creation is single-flight per module and idempotent
 * across pod-manager replicas and restarts: an existing Deployment is adopted, a changed config
 * patches it (a rolling update), and only objects labelled as splice-orc's are ever deleted.
 * Changes to one module's objects (create, roll, scale, delete) run one at a time (kube-module.ts
 * keeps these rules, per module). Closing the backend leaves the Deployments running, for the
 * next pod-manager to adopt.
 */
import { PatchStrategy, setHeaderOptions, type V1Deployment } from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import {
  type Backend,
  type ModuleStatus,
  type ReadyReplica,
  type ReplicaUsage,
  rollUp,
  type StartOptions,
} from './backend.js';
import { createKubeApi, type KubeApi } from './kube-api.js';
import { KubeApiError, kubeRequest } from './kube-errors.js';
import { KubeModule } from './kube-module.js';
import {
  CONFIG_HASH_ANNOTATION,
  deploymentFor,
  type KubeObjectOptions,
  MANAGED_BY,
  newSecret,
  objectNameFor,
  secretOfDeployment,
  serviceFor,
} from './kube-objects.js';
import { failureOf, replicaFromPod, restartsOf, terminationOf } from './kube-pods.js';
import { usageFromPodMetrics } from './kube-usage.js';
import { PodWatch } from './kube-watch.js';

/** Options of {@link createKubernetesBackend}. */
export interface KubernetesBackendOptions extends KubeObjectOptions {
  /** A kubeconfig file; default $KUBECONFIG, ~/.kube/config, or the pod's service account. */
  kubeconfig?: string | undefined;
  /** Longest one API request may take, ms. Default 10 000. */
  requestTimeoutMs?: number;
  /** How often the pod watch is replaced by a fresh one, ms. Default 300 000. */
  watchRenewMs?: number;
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
  readonly #watch: PodWatch;
  /**
   * One per module the backend has acted on, kept for its life: a waiting start compares the count
   * of stops after they end, and there are no more of them than configured modules.
   */
  readonly #modules = new Map<string, KubeModule>();

  constructor(options: KubernetesBackendOptions) {
    this.#o = options;
    this.#api = createKubeApi({
      kubeconfig: options.kubeconfig,
      timeoutMs: options.requestTimeoutMs ?? 10_000,
    });
    this.#watch = new PodWatch({
      api: this.#api,
      namespace: options.namespace,
      log: options.log,
      onEndpointGone: options.onEndpointGone,
      renewMs: options.watchRenewMs,
    });
  }

  async start(spec: ModuleSpec, options: StartOptions = {}): Promise<void> {
    const module = this.#module(spec.name);
    await this.#watch.sync();
    // A start after an unload brings the module back, once the unload is done.
    await module.afterStop();
    if (this.ready(spec.name).length > 0) return;
    await module.start(async () => {
      const hash = await module.ensure(() => this.#create(spec));
      await this.#waitFor(spec.name, { count: 1, hash, signal: options.signal });
    });
  }

  /**
   * Adopts what an earlier pod-manager left running: each configured module's Deployment, if one
   * exists, is rolled to the current config. (Calls find their ready pods without a start.)
   */
  async resume(specs: readonly ModuleSpec[]): Promise<void> {
    await this.#watch.sync();
    await Promise.all(
      specs.map((spec) =>
        this.#module(spec.name).serial(async () => {
          const existing = await this.#readDeployment(spec.name);
          if (
            !existing ||
            !isOurs(existing) ||
            (spec.image === undefined && spec.package.startsWith('file:'))
          )
            return;
          this.#o.log.info(
            { module: spec.name, deployment: existing.metadata?.name },
            'adopted module Deployment',
          );
          await this.#roll(spec, existing);
        }),
      ),
    );
  }

  ready(name: string): ReadyReplica[] {
    return this.#watch.ready(name);
  }

  async prepare(spec: ModuleSpec): Promise<void> {
    deployable(spec);
  }

  async reconfigure(spec: ModuleSpec): Promise<void> {
    deployable(spec);
    const module = this.#module(spec.name);
    // A Deployment being created right now is created with the old spec: roll it after.
    await module.afterCreate();
    await module.serial(async () => {
      const existing = await this.#readDeployment(spec.name);
      if (existing) await this.#roll(spec, existing);
    });
  }

  async addReplica(spec: ModuleSpec): Promise<void> {
    const module = this.#module(spec.name);
    await this.#watch.sync();
    const before = this.ready(spec.name).length;
    const stopped = () =>
      new ServiceError('MODULE_STOPPED', `module '${spec.name}' is stopped or being stopped`);
    if (module.stopping) throw stopped();
    const hash = await module.serial(async () => {
      const existing = await this.#readDeployment(spec.name);
      // Deleted meanwhile (an unload): scaling up must not bring it back.
      if (!existing || module.stopping) throw stopped();
      // One more than the Deployment asks for now: concurrent calls each add one.
      await this.#scale(spec.name, (existing.spec?.replicas ?? 0) + 1);
      return existing.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    });
    await this.#waitFor(spec.name, { count: before + 1, hash });
  }

  /**
   * Removes an idle ready pod: it takes no new call at once, and the ReplicaSet deletes exactly
   * it (pod-deletion-cost). Pods that are not ready are the cluster's to restart, and nothing is
   * removed while a rollout is under way (scaling down then could remove a serving pod).
   */
  async removeReplica(name: string, id: string): Promise<void> {
    const pod = this.#watch.pod(name, id);
    if (!pod || replicaFromPod(pod).state !== 'ready') return;
    // Out of routing now, in the caller's turn of the event loop (it checked the pod is idle).
    this.#watch.leave(name, [id]);
    let removed = false;
    try {
      removed = await this.#module(name).serial(() => this.#scaleDown(name, id));
    } finally {
      if (!removed) this.#watch.stay(name, [id]);
    }
  }

  /** Scales the Deployment down by the pod `id`; false when it did not (or cannot tell it did). */
  async #scaleDown(name: string, id: string): Promise<boolean> {
    const existing = await this.#readDeployment(name);
    const replicas = existing?.spec?.replicas ?? 0;
    // Pods of another config than the Deployment's: a rollout is under way.
    const current = existing?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    const live = this.#watch.pods(name).filter((p) => !p.metadata?.deletionTimestamp);
    const rolling = live.some((p) => p.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] !== current);
    if (!existing || replicas <= 1 || rolling) return false;
    await kubeRequest(
      `mark pod ${id} for removal`,
      this.#api.core.patchNamespacedPod(
        {
          name: id,
          namespace: this.#o.namespace,
          body: { metadata: { annotations: { [DELETION_COST]: '-1000' } } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    await this.#scale(name, replicas - 1);
    // The ReplicaSet removes pods that are not ready before it weighs deletion cost: if it took
    // another one, this pod serves on.
    await this.#watch
      .until(
        () => this.#watch.pods(name).filter((p) => !p.metadata?.deletionTimestamp).length < live.length,
        30_000,
      )
      .catch(() => undefined);
    const victim = this.#watch.pod(name, id);
    return victim === undefined || victim.metadata?.deletionTimestamp !== undefined;
  }

  stop(name: string): Promise<void> {
    const module = this.#module(name);
    return module.stop(() => this.#stop(name, module));
  }

  async #stop(name: string, module: KubeModule): Promise<void> {
    const objectName = objectNameFor(name);
    const ns = this.#o.namespace;
    const pods = this.#watch.pods(name).map((p) => p.metadata?.name ?? '');
    await module
      .serial(async () => {
        this.#watch.leave(name, pods);
        const deployment = await this.#readDeployment(name);
        if (deployment && isOurs(deployment)) {
          await kubeRequest(
            `delete Deployment ${objectName}`,
            this.#api.apps.deleteNamespacedDeployment({
              name: objectName,
              namespace: ns,
              propagationPolicy: 'Background',
            }),
            404,
          );
        }
        const service = await kubeRequest(
          `read Service ${objectName}`,
          this.#api.core.readNamespacedService({ name: objectName, namespace: ns }),
          404,
        );
        if (service && isOurs(service)) {
          await kubeRequest(
            `delete Service ${objectName}`,
            this.#api.core.deleteNamespacedService({ name: objectName, namespace: ns }),
            404,
          );
        }
      })
      .catch((error) => {
        // Nothing was deleted, or not all: what runs keeps serving.
        this.#watch.stay(name, pods);
        throw error;
      });
    // Like the local backend, stop resolves once the servers are gone (their calls drained).
    await this.#watch
      .until(() => this.#watch.pods(name).length === 0, this.#o.graceMs + 30_000)
      .catch(() => this.#o.log.warn({ module: name }, 'module pods still terminating'));
  }

  status(name: string): ModuleStatus {
    const pods = this.#watch.pods(name);
    const replicas = pods.map(replicaFromPod);
    const restarts = pods.reduce((n, p) => n + restartsOf(p), 0);
    const module = this.#modules.get(name);
    const base = module?.stopping ? 'stopping' : module?.starting ? 'starting' : 'absent';
    return { ...rollUp(replicas, base), replicas, restarts };
  }

  async reportUnreachable(name: string, endpoint: string): Promise<boolean> {
    return !this.ready(name).some((r) => r.endpoint === endpoint);
  }

  async whyEnded(
    name: string,
    id: string,
    o: { since: number; waitMs: number },
  ): Promise<string | undefined> {
    // The kubelet reports a dead container within a second or two; the watch brings it here.
    // Kubernetes' timestamps have whole seconds: a termination in the call's first second counts.
    const since = Math.floor(o.since / 1000) * 1000;
    const deadline = Date.now() + o.waitMs;
    for (;;) {
      const pod = this.#watch.pods(name).find((p) => p.metadata?.name === id);
      const why = pod && terminationOf(pod, since);
      if (why || !pod || Date.now() >= deadline) return why;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async usage(name: string): Promise<ReplicaUsage[]> {
    const pods = this.#watch.pods(name).map((p) => p.metadata?.name ?? '');
    return usageFromPodMetrics(this.#api, this.#o.namespace, pods);
  }

  async close(): Promise<void> {
    await this.#watch.close();
  }

  /** The module's state, made on first use. */
  #module(name: string): KubeModule {
    let module = this.#modules.get(name);
    if (!module) {
      module = new KubeModule();
      this.#modules.set(name, module);
    }
    return module;
  }

  /**
   * Creates the module's objects, or adopts and (if its config changed) rolls existing ones.
   * Resolves with the config hash the module's Deployment now has.
   */
  async #create(spec: ModuleSpec): Promise<string | undefined> {
    deployable(spec);
    const ns = this.#o.namespace;
    const desired = deploymentFor(spec, Math.max(1, spec.minReplicas), this.#o, newSecret());
    let hash = desired.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    let existing = await this.#readDeployment(spec.name);
    if (!existing) {
      const created = await kubeRequest(
        `create Deployment ${desired.metadata?.name}`,
        this.#api.apps.createNamespacedDeployment({
          namespace: ns,
          body: desired,
          fieldManager: FIELD_MANAGER,
        }),
        409,
      );
      if (created) {
        this.#o.log.info(
          { module: spec.name, deployment: desired.metadata?.name },
          'created module Deployment',
        );
      } else {
        // Another pod-manager created it first: adopt theirs.
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
      hash = await this.#roll(spec, existing);
      if ((existing.spec?.replicas ?? 0) === 0) await this.#scale(spec.name, Math.max(1, spec.minReplicas));
    }
    const service = serviceFor(spec, this.#o);
    // 409: it exists (created with the Deployment, by us or another pod-manager).
    await kubeRequest(
      `create Service ${service.metadata?.name}`,
      this.#api.core.createNamespacedService({ namespace: ns, body: service, fieldManager: FIELD_MANAGER }),
      409,
    );
    return hash;
  }

  /**
   * Patches the pod template when the config hash differs: the cluster rolls the pods over. The
   * patch tests the old hash, so two pod-managers changing it at once cannot overwrite each other.
   */
  async #roll(spec: ModuleSpec, existing: V1Deployment): Promise<string | undefined> {
    // The servers keep their secret across rolls: pods of both templates serve during a roll.
    const secret = secretOfDeployment(existing) ?? newSecret();
    const desired = deploymentFor(spec, existing.spec?.replicas ?? 1, this.#o, secret);
    const want = desired.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    const have = existing.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
    if (want === have) return have;
    const path = `/metadata/annotations/${CONFIG_HASH_ANNOTATION.replace('/', '~1')}`;
    const body = [
      ...(existing.metadata?.annotations ? [] : [{ op: 'add', path: '/metadata/annotations', value: {} }]),
      ...(have === undefined ? [] : [{ op: 'test', path, value: have }]),
      { op: have === undefined ? 'add' : 'replace', path, value: want },
      { op: 'replace', path: '/spec/template', value: desired.spec?.template },
    ];
    const name = objectNameFor(spec.name);
    try {
      await this.#api.apps.patchNamespacedDeployment(
        { name, namespace: this.#o.namespace, body, fieldManager: FIELD_MANAGER },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
    } catch (error) {
      const failure = KubeApiError.from(error);
      // 422 is both a failed test (another pod-manager rolled it first: fine) and an invalid template.
      const now = failure.invalid ? await this.#readDeployment(spec.name) : undefined;
      const hash = now?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
      if (hash !== undefined && hash !== have) return hash;
      throw failure.toServiceError(`update Deployment ${name}`);
    }
    this.#o.log.info(
      { module: spec.name, deployment: name, from: have, to: want },
      'rolling module Deployment',
    );
    return want;
  }

  async #scale(name: string, replicas: number): Promise<void> {
    const objectName = objectNameFor(name);
    await kubeRequest(
      `scale Deployment ${objectName} to ${replicas}`,
      this.#api.apps.patchNamespacedDeployment(
        {
          name: objectName,
          namespace: this.#o.namespace,
          body: { spec: { replicas } },
          fieldManager: FIELD_MANAGER,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
  }

  #readDeployment(name: string): Promise<V1Deployment | undefined> {
    const objectName = objectNameFor(name);
    return kubeRequest(
      `read Deployment ${objectName}`,
      this.#api.apps.readNamespacedDeployment({ name: objectName, namespace: this.#o.namespace }),
      404,
    );
  }

  /**
   * Resolves once `count` pods of the module are ready; rejects at once when a current pod cannot
   * start (with the cluster's reason), when the Deployment reports that pods cannot be created,
   * or when the module is stopped meanwhile.
   */
  async #waitFor(
    name: string,
    o: { count: number; hash: string | undefined; signal?: AbortSignal | undefined },
  ): Promise<void> {
    const { count, hash, signal } = o;
    const module = this.#module(name);
    const mark = module.stopMark();
    let checkedAt = Date.now();
    let deploymentFailure: string | undefined;
    await this.#watch
      .until(
        () => {
          if (this.ready(name).length >= count) return true;
          if (module.stoppedSince(mark))
            throw new ServiceError('MODULE_STOPPED', `module '${name}' was stopped while it started`);
          // Only pods of the current config count: a failing pod of an old one is being replaced.
          const current = this.#watch
            .pods(name)
            .filter(
              (p) =>
                !p.metadata?.deletionTimestamp &&
                (hash === undefined || p.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] === hash),
            );
          const failure = current.map(failureOf).find(Boolean) ?? deploymentFailure;
          if (failure)
            throw new ServiceError('POD_START_FAILED', `module '${name}' cannot start: ${failure}`);
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
      )
      .catch((error) => {
        if (error instanceof ServiceError) throw error;
        if (signal?.aborted) throw signal.reason;
        throw new ServiceError(
          'START_TIMEOUT',
          `module '${name}' has no ready pod after ${this.#o.startTimeoutMs} ms (server.start_timeout_ms)`,
        );
      });
  }

  /** Why the Deployment cannot bring up pods (gone, quota, admission, no progress), if it cannot. */
  async #deploymentFailure(name: string): Promise<string | undefined> {
    let deployment: V1Deployment | undefined;
    try {
      deployment = await this.#readDeployment(name);
    } catch {
      return undefined;
    }
    if (!deployment) return 'its Deployment was deleted';
    for (const c of deployment.status?.conditions ?? []) {
      if (c.type === 'ReplicaFailure' && c.status === 'True') return `${c.reason}: ${c.message}`;
      if (c.type === 'Progressing' && c.status === 'False') return `${c.reason}: ${c.message}`;
    }
    return undefined;
  }
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
