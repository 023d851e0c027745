/**
 * A client session: its id, the remote references it holds and their lifetime. References are
 * released explicitly, by `await using`, or when the garbage collector finds no proxy uses them
 * (FinalizationRegistry, batched); while any is live the session renews its lease on that module's
 * server, so the server keeps them exactly as long as this process wants them.
 */
import { randomUUID } from 'node:crypto';
import {
  Code,
  decode,
  describe,
  encode,
  type InvokeResponse,
  type Op,
  PROGRAM_VERSION,
  type RemoteRef,
  Slot,
  SpliceError,
} from '@splice-orc/protocol';
import { RemoteError } from './errors.js';
import {
  compile,
  createRemoteProxy,
  describeNode,
  type ProxyHost,
  type ProxyNode,
  type RefHandle,
} from './remote-proxy.js';
import type { Transport } from './transport.js';

/** Options of a session. */
export interface SessionOptions {
  transport: Transport;
  /** Default per-call timeout, ms. */
  timeoutMs: number;
  /** How long GC-found releases wait to be sent together, ms. Default 1 000. */
  releaseBatchMs?: number;
}

/** Options of one call made through {@link Session.call}. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface ModuleState {
  live: number;
  pendingReleases: Set<number>;
  leaseMs: number;
  lastCall: number;
}

/** The state shared by every proxy of one client. */
export class Session implements ProxyHost {
  readonly id = randomUUID();
  readonly #options: SessionOptions;
  readonly #modules = new Map<string, ModuleState>();
  readonly #finalizer = new FinalizationRegistry<{ module: string; id: number }>((held) =>
    this.#collected(held),
  );
  #flushTimer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #renewPeriod = Number.POSITIVE_INFINITY;

  #closed = false;

  constructor(options: SessionOptions) {
    this.#options = options;
  }

  /** The proxy of a module root. */
  root(module: string, options?: CallOptions): unknown {
    return createRemoteProxy({ module, base: null, steps: [], options }, this);
  }

  run(node: ProxyNode, options: CallOptions = node.options ?? {}): Promise<unknown> {
    const ops: Op[] = [];
    const result = compile(node, ops);
    if (result instanceof Slot || result === null) return this.send(node.module, ops, options);
    // A bare reference: nothing to run remotely, its value is itself.
    return Promise.resolve(createRemoteProxy(node, this));
  }

  /** Sends a program to a module and decodes the answer; remote throws become RemoteErrors. */
  async send(module: string, ops: Op[], options: CallOptions = {}): Promise<unknown> {
    if (this.#closed) throw new SpliceError(Code.FAILED_PRECONDITION, 'the client is closed');
    const state = this.#state(module);
    const releases = [...state.pendingReleases];
    state.pendingReleases.clear();
    const program = releases.length ? [{ op: 'release', ids: releases } as Op, ...ops] : ops;
    const body = encode({ v: PROGRAM_VERSION, session: this.id, ops: program }, { exportRef: refuseByValue });
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    let bytes: Buffer;
    try {
      bytes = await this.#options.transport.invoke(invokePath(module), body, {
        timeoutMs,
        signal: options.signal,
      });
    } catch (error) {
      for (const id of releases) state.pendingReleases.add(id);
      throw error;
    }
    state.lastCall = Date.now();
    const response = decode(bytes, { importRef: (ref) => this.#import(module, ref) }) as InvokeResponse;
    if (state.leaseMs !== response.lease) {
      state.leaseMs = response.lease;
      if (state.live > 0) this.#startRenewing();
    }
    if (!response.ok) throw new RemoteError(response.error, module);
    return response.value;
  }

  async release(handle: RefHandle): Promise<void> {
    if (handle.released) return;
    handle.released = true;
    this.#finalizer.unregister(handle);
    const state = this.#state(handle.module);
    state.live--;
    state.pendingReleases.add(handle.ref.id);
    await this.#flushModule(handle.module);
  }

  /** Sends pending releases, stops timers. Further calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearTimeout(this.#flushTimer);
    clearInterval(this.#renewTimer);
    await Promise.allSettled([...this.#modules.keys()].map((m) => this.#flushModule(m)));
    this.#closed = true;
  }

  #import(module: string, ref: RemoteRef): unknown {
    const handle: RefHandle = { module, ref, released: false };
    this.#finalizer.register(handle, { module, id: ref.id }, handle);
    this.#state(module).live++;
    this.#startRenewing();
    return createRemoteProxy({ module, base: handle, steps: [] }, this);
  }

  #collected({ module, id }: { module: string; id: number }): void {
    const state = this.#state(module);
    state.live--;
    state.pendingReleases.add(id);
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      for (const m of this.#modules.keys()) this.#flushModule(m).catch(() => {});
    }, this.#options.releaseBatchMs ?? 1_000).unref();
  }

  async #flushModule(module: string): Promise<void> {
    if (this.#closed || this.#state(module).pendingReleases.size === 0) return;
    await this.send(module, []);
  }

  /** Keeps the leases of modules with live references from running out. */
  #startRenewing(): void {
    const period = this.#renewEvery();
    if (this.#renewTimer && period >= this.#renewPeriod) return;
    clearInterval(this.#renewTimer);
    this.#renewPeriod = period;
    const tick = () => {
      const now = Date.now();
      for (const [module, state] of this.#modules) {
        if (state.live > 0 && now - state.lastCall > state.leaseMs / 3) this.send(module, []).catch(() => {});
      }
    };
    this.#renewTimer = setInterval(tick, period).unref();
  }

  #renewEvery(): number {
    const leases = [...this.#modules.values()].map((s) => s.leaseMs);
    return Math.max(100, Math.min(...leases) / 4);
  }

  #state(module: string): ModuleState {
    let state = this.#modules.get(module);
    if (!state) {
      state = { live: 0, pendingReleases: new Set(), leaseMs: 60_000, lastCall: 0 };
      this.#modules.set(module, state);
    }
    return state;
  }
}

/** `/modules/<name>/invoke`, with scoped names encoded. */
export function invokePath(module: string): string {
  return `/modules/${encodeURIComponent(module)}/invoke`;
}

function refuseByValue(value: object): never {
  throw new SpliceError(
    Code.INVALID_ARGUMENT,
    `cannot send ${describe(value)} to a remote module: pass plain data (objects, arrays, typed arrays, Map, Set, Date, errors) or remote references`,
  );
}

export { describeNode };
