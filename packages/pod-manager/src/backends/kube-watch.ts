/**
 * The pod-manager's view of its module pods: an informer (one list, then a watch) on the pods it
 * manages, indexed by module, with the ready replicas recomputed on each event because every call
 * reads them. Every few minutes, and after a watch fails, a fresh informer lists and watches
 * again and replaces the old one (stopping and restarting one informer is not safe in
 * client-node: a late callback of the old watch aborts the new one), so a silently dead connection
 * cannot leave the view stale for long. A failed first list is retried by the next caller.
 */
import { makeInformer, type V1Pod } from '@kubernetes/client-node';
import type { FastifyBaseLogger } from 'fastify';
import type { ReadyReplica } from './backend.js';
import type { KubeApi } from './kube-api.js';
import { KubeApiError } from './kube-errors.js';
import { MANAGED_SELECTOR, MODULE_NAME_ANNOTATION } from './kube-objects.js';
import { callbackEndpointOf, endpointOf, isReady, secretOf } from './kube-pods.js';

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
  /** How often a fresh informer replaces the current one, ms. Default 5 min. */
  renewMs?: number | undefined;
}

type PodInformer = ReturnType<typeof makeInformer<V1Pod>>;

/** The module pods of one namespace, kept current. */
export class PodWatch {
  readonly #o: PodWatchOptions;
  /** The informer whose events count; undefined until the pods have been listed. */
  #informer: PodInformer | undefined;
  #synced: Promise<void>;
  #closed = false;
  readonly #renew: NodeJS.Timeout;
  #retry: NodeJS.Timeout | undefined;
  /** Reconnections run one after another. */
  #connecting: Promise<void> = Promise.resolve();
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
    this.#synced = this.#connect();
    this.#synced.catch((error) => o.log.error({ err: error }, 'cannot list module pods'));
    this.#renew = setInterval(() => this.#reconnect(), o.renewMs ?? RENEW_MS);
    this.#renew.unref();
  }

  /** Resolves once the pods have been listed; rejects (and lists again next time) if they cannot be. */
  async sync(): Promise<void> {
    const synced = this.#synced;
    await synced.catch((error) => {
      // A Role fixed meanwhile takes effect without a restart of the pod-manager.
      if (this.#synced === synced && !this.#closed) {
        this.#synced = this.#connect();
        this.#synced.catch(() => undefined);
      }
      throw KubeApiError.from(error).toServiceError(`list pods in namespace ${this.#o.namespace}`);
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

  /** Routes to these pods again (their removal did not happen). */
  stay(module: string, podNames: string[]): void {
    for (const name of podNames) this.#leaving.delete(name);
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
    clearTimeout(this.#retry);
    await Promise.all([this.#synced.catch(() => undefined), this.#connecting]);
    await this.#informer?.stop();
  }

  /**
   * Lists and watches with a new informer; once it has listed, its view replaces the current one
   * (pods that vanished meanwhile included) and the old informer is stopped.
   */
  async #connect(): Promise<void> {
    const { api, namespace, log } = this.#o;
    const listed: { ok: boolean; error?: unknown } = { ok: false };
    const informer: PodInformer = makeInformer<V1Pod>(
      api.config,
      `/api/v1/namespaces/${namespace}/pods`,
      async () => {
        try {
          const list = await api.core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR });
          listed.ok = true;
          return list;
        } catch (error) {
          listed.error = error;
          throw error;
        }
      },
      MANAGED_SELECTOR,
    );
    const current = () => this.#informer === informer && !this.#closed;
    informer.on('add', (pod) => current() && this.#onPod(pod));
    informer.on('update', (pod) => current() && this.#onPod(pod));
    informer.on('delete', (pod) => current() && this.#onPod(pod, true));
    informer.on('error', (error) => {
      if (!current()) return;
      log.warn({ err: error }, `kubernetes pod watch failed; watching anew in ${RETRY_MS} ms`);
      this.#reconnectSoon();
    });
    // start() resolves even when the list fails (the informer reports that as an error event).
    await informer.start();
    if (!listed.ok || this.#closed) {
      await informer.stop();
      if (this.#closed) return;
      throw listed.error ?? new Error('the pods were not listed');
    }
    const previous = this.#informer;
    this.#informer = informer;
    this.#replaceAll(informer.list(namespace));
    await previous?.stop();
  }

  /** Connects anew after the earlier reconnections; a failure is retried after a pause. */
  #reconnect(): void {
    if (this.#closed || !this.#informer) return;
    this.#connecting = this.#connecting.then(() =>
      this.#connect().catch((error) => {
        this.#o.log.warn({ err: error }, 'cannot renew the kubernetes pod watch; trying again');
        this.#reconnectSoon();
      }),
    );
  }

  /** One pending reconnection at most. */
  #reconnectSoon(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#reconnect();
    }, RETRY_MS);
    this.#retry.unref();
  }

  /** Takes a fresh list as the whole view. */
  #replaceAll(pods: readonly V1Pod[]): void {
    const modules = new Set(this.#pods.keys());
    this.#pods.clear();
    for (const pod of pods) {
      const module = pod.metadata?.annotations?.[MODULE_NAME_ANNOTATION];
      const name = pod.metadata?.name;
      if (!module || !name) continue;
      modules.add(module);
      let byName = this.#pods.get(module);
      if (!byName) {
        byName = new Map();
        this.#pods.set(module, byName);
      }
      byName.set(name, pod);
    }
    const alive = new Set(pods.map((p) => p.metadata?.name));
    for (const name of this.#leaving) if (!alive.has(name)) this.#leaving.delete(name);
    for (const module of modules) this.#index(module);
    for (const listener of [...this.#listeners]) listener();
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
      const endpoint = endpointOf(pod);
      const secret = secretOf(pod);
      if (!isReady(pod) || !endpoint || !secret) continue;
      served.push(endpoint);
      if (!this.#leaving.has(name)) {
        ready.push({ id: name, endpoint, secret, callbackEndpoint: callbackEndpointOf(pod) });
      }
    }
    this.#ready.set(module, ready);
    this.#served.set(module, served);
    // A leaving pod still finishes its calls: its connections are dropped only once it stops serving.
    for (const endpoint of before) if (!served.includes(endpoint)) this.#o.onEndpointGone?.(endpoint);
  }
}
