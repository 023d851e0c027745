/**
 * The pod-manager's view of its module pods: an informer (one list, then a watch) on the pods it
 * manages, indexed by module, with the ready replicas recomputed on each event because every call
 * reads them. The watch is renewed every few minutes, so a silently dead connection cannot leave
 * the view stale for long; a failed first list is retried by the next caller.
 */
import { makeInformer, type V1Pod } from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import type { ReadyReplica } from './backend.js';
import { type KubeApi, serviceErrorFromKube } from './kube-api.js';
import { MANAGED_SELECTOR, MODULE_NAME_ANNOTATION } from './kube-objects.js';
import { isReady, replicaFromPod } from './kube-pods.js';

/** How often the watch is replaced by a fresh one (a half-open connection delivers nothing). */
const RENEW_MS = 5 * 60_000;
/** Pause before a failed watch is started again. */
const RETRY_MS = 2_000;

/** Options of {@link PodWatch}. */
export interface PodWatchOptions {
  api: KubeApi;
  namespace: string;
  log: FastifyBaseLogger;
  /** Called when an endpoint stops being served, so clients of it can be dropped. */
  onEndpointGone?: ((endpoint: string) => void) | undefined;
}

/** The module pods of one namespace, kept current. */
export class PodWatch {
  readonly #o: PodWatchOptions;
  readonly #informer;
  #synced: Promise<void>;
  #listed = false;
  #listError: unknown;
  #closed = false;
  readonly #renew: NodeJS.Timeout;
  /** Module name -> its pods. */
  readonly #pods = new Map<string, Map<string, V1Pod>>();
  /** Module name -> ready replicas. */
  readonly #ready = new Map<string, ReadyReplica[]>();
  /** Module name -> endpoints of ready pods, leaving ones included. */
  readonly #served = new Map<string, string[]>();
  /** Pods being removed: no new call goes to them even before the watch reports their deletion. */
  readonly #leaving = new Set<string>();
  readonly #listeners = new Set<() => void>();

  constructor(o: PodWatchOptions) {
    this.#o = o;
    const { api, namespace } = o;
    this.#informer = makeInformer<V1Pod>(
      api.config,
      `/api/v1/namespaces/${namespace}/pods`,
      async () => {
        try {
          const list = await api.core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR });
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
      // Before the first list, the next caller lists again (see sync); after it, the watch restarts.
      if (this.#closed || !this.#listed) return;
      o.log.warn({ err: error }, `kubernetes pod watch failed; restarting in ${RETRY_MS} ms`);
      this.#restartSoon();
    });
    this.#synced = this.#list();
    this.#renew = setInterval(() => void this.#restart(), RENEW_MS);
    this.#renew.unref();
  }

  /** Resolves once the pods have been listed; rejects (and lists again next time) if they cannot be. */
  async sync(): Promise<void> {
    const synced = this.#synced;
    await synced.catch((error) => {
      // A Role fixed meanwhile takes effect without a restart of the pod-manager.
      if (this.#synced === synced && !this.#closed) this.#synced = this.#list();
      throw serviceErrorFromKube(error, `list pods in namespace ${this.#o.namespace}`);
    });
  }

  /** The module's pods, terminating ones included. */
  pods(module: string): V1Pod[] {
    return [...(this.#pods.get(module)?.values() ?? [])];
  }

  /** One pod of the module by name. */
  pod(module: string, name: string): V1Pod | undefined {
    return this.#pods.get(module)?.get(name);
  }

  /** Pods that take calls now. */
  ready(module: string): ReadyReplica[] {
    return this.#ready.get(module) ?? [];
  }

  /** Stops routing to these pods at once (they are about to be removed). */
  leave(module: string, podNames: string[]): void {
    for (const name of podNames) this.#leaving.add(name);
    this.#index(module);
  }

  /**
   * Resolves when `check` returns true (checked on every pod event and every `tickMs`), rejects
   * with what it throws, with the signal's reason on abort, or with an Error('timeout').
   */
  until(check: () => boolean, timeoutMs: number, signal?: AbortSignal, tickMs = 1_000): Promise<void> {
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

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#renew);
    // A list in flight would start a watch after stop(): let it settle, then stop.
    await this.#synced.catch(() => undefined);
    await this.#informer.stop();
  }

  #list(): Promise<void> {
    this.#listError = undefined;
    // start() resolves even when the list fails (the informer reports that as an error event).
    const listing = this.#informer.start().then(() => {
      if (!this.#listed) throw this.#listError ?? new Error('the pods were not listed');
    });
    listing.catch((error) => this.#o.log.error({ err: error }, 'cannot list module pods'));
    return listing;
  }

  #restartSoon(): void {
    setTimeout(() => void this.#restart(), RETRY_MS).unref();
  }

  /** A fresh watch from the last resource version (the informer lists again if that expired). */
  async #restart(): Promise<void> {
    if (this.#closed || !this.#listed) return;
    try {
      await this.#informer.stop();
      if (!this.#closed) await this.#informer.start();
    } catch (error) {
      this.#o.log.warn({ err: error }, 'cannot restart the kubernetes pod watch; trying again');
      this.#restartSoon();
    }
  }

  #onPod(pod: V1Pod, deleted = false): void {
    const module = pod.metadata?.annotations?.[MODULE_NAME_ANNOTATION];
    const name = pod.metadata?.name;
    if (!module || !name) return;
    let pods = this.#pods.get(module);
    if (!pods) {
      pods = new Map();
      this.#pods.set(module, pods);
    }
    if (deleted) {
      pods.delete(name);
      this.#leaving.delete(name);
    } else {
      pods.set(name, pod);
    }
    if (pods.size === 0) this.#pods.delete(module);
    this.#index(module);
    for (const listener of [...this.#listeners]) listener();
  }

  #index(module: string): void {
    const before = this.#served.get(module) ?? [];
    const served: string[] = [];
    const ready: ReadyReplica[] = [];
    for (const pod of this.#pods.get(module)?.values() ?? []) {
      const name = pod.metadata?.name ?? '';
      const endpoint = replicaFromPod(pod).endpoint;
      if (!isReady(pod) || !endpoint) continue;
      served.push(endpoint);
      if (!this.#leaving.has(name)) ready.push({ id: name, endpoint });
    }
    this.#ready.set(module, ready);
    this.#served.set(module, served);
    // A leaving pod still finishes its calls: its connections are dropped only once it stops serving.
    for (const endpoint of before) if (!served.includes(endpoint)) this.#o.onEndpointGone?.(endpoint);
  }
}
