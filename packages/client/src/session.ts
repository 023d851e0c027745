/**
 * A client session: its id, the remote references it holds and their lifetime. References are
 * released explicitly, by `await using`, or when the garbage collector finds no proxy uses them
 * (FinalizationRegistry, batched); while any is live the session renews its lease on the
 * module-server that holds it, so the server keeps them exactly as long as this process wants them.
 * A call that uses references is routed to the server holding them (with several replicas, the
 * pod-manager would otherwise pick any).
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
  Rest,
  Slot,
  SpliceError,
} from '@splice-orc/protocol';
import { RemoteError } from './errors.js';
import type { PlacementTracker } from './placement.js';
import {
  compile,
  createRemoteProxy,
  type ProxyHost,
  type ProxyNode,
  type RefHandle,
} from './remote-proxy.js';
import type { Transport } from './transport.js';

/** Options of a session. */
export interface SessionOptions {
  transport: Transport;
  /** Where modules run, and the modules imported here. */
  placement: PlacementTracker;
  /** Default per-call timeout, ms. */
  timeoutMs: number;
  /** How long GC-found releases wait to be sent together, ms. Default 1 000. */
  releaseBatchMs?: number;
}

/** Options of one call. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What this session holds on one module-server instance. */
interface ServerState {
  live: number;
  pendingReleases: Set<number>;
  lastCall: number;
}

interface ModuleState {
  leaseMs: number;
  servers: Map<string, ServerState>;
}

/** The state shared by every proxy of one client. */
export class Session implements ProxyHost {
  readonly id = randomUUID();
  readonly #options: SessionOptions;
  readonly #modules = new Map<string, ModuleState>();
  readonly #finalizer = new FinalizationRegistry<{ module: string; server: string; id: number }>((held) =>
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
    const servers = new Set<string>();
    const handles: RefHandle[] = [];
    const result = compile(node, ops, servers, handles);
    if (!(result instanceof Slot || result === null)) {
      // A bare reference: nothing to run remotely, its value is itself.
      return Promise.resolve(createRemoteProxy(node, this));
    }
    if (servers.size > 1) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `one call cannot use references held by different module-server replicas (${[...servers].join(', ')})`,
      );
    }
    // The handles stay reachable until the answer is in: the garbage collector must not release
    // a reference that this very program uses.
    return this.send(node.module, ops, { ...options, route: servers.values().next().value }).finally(() =>
      keepAlive(handles),
    );
  }

  /** Sends a program to a module and decodes the answer; remote throws become RemoteErrors. */
  async send(
    module: string,
    ops: Op[],
    options: CallOptions & { route?: string | undefined } = {},
  ): Promise<unknown> {
    if (this.#closed) throw new SpliceError(Code.FAILED_PRECONDITION, 'the client is closed');
    const state = this.#state(module);
    const server = options.route ? this.#server(state, options.route) : undefined;
    const releases = server ? [...server.pendingReleases] : [];
    server?.pendingReleases.clear();
    // Appended, not prepended: the program's slots number its own operations from 0.
    const program = releases.length ? [...ops, { op: 'release', ids: releases } as Op] : ops;
    const body = encode({ v: PROGRAM_VERSION, session: this.id, ops: program }, { exportRef: refuseByValue });
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    let bytes: Uint8Array;
    try {
      bytes = await this.#dispatch(module, body, { timeoutMs, signal: options.signal, route: options.route });
    } catch (error) {
      for (const id of releases) server?.pendingReleases.add(id);
      throw error;
    }
    if (server) server.lastCall = Date.now();
    const response = decode(bytes, { importRef: (ref) => this.#import(module, ref) }) as InvokeResponse;
    if (state.leaseMs !== response.lease) {
      state.leaseMs = response.lease;
      this.#startRenewing();
    }
    if (!response.ok) throw new RemoteError(response.error, module);
    return response.value;
  }

  /**
   * Runs an encoded program where it belongs: where its references live, else where the module is
   * placed now. Calls are timed for the placement policy.
   */
  async #dispatch(
    module: string,
    body: Uint8Array,
    o: { timeoutMs: number; signal?: AbortSignal | undefined; route?: string | undefined },
  ): Promise<Uint8Array> {
    const tracker = this.#options.placement;
    const local = o.route ? tracker.isLocal(o.route) : (await tracker.placement(module)) === 'local';
    const started = performance.now();
    if (local) {
      const host = await tracker.host(module, this.#state(module).leaseMs).catch((error: unknown) => {
        if (o.route) throw error;
        // Placed local but not importable here: warn once, report it, and run it remotely.
        process.emitWarning((error as Error).message, { code: 'SPLICE_LOCAL_UNAVAILABLE' });
        tracker.localUnavailable(module);
        return undefined;
      });
      if (host) {
        const { payload } = await withDeadline(host.handle(body), o.timeoutMs, o.signal);
        tracker.record(module, 'local', performance.now() - started);
        return payload;
      }
    }
    const answer = await this.#options.transport.invoke(Rest.Paths.invoke(module), body, o);
    tracker.update(module, answer.placement);
    // A cold start is not what running remotely costs per call: the policy sees it without.
    tracker.record(module, 'remote', performance.now() - started - (answer.coldStartMs ?? 0));
    return answer.payload;
  }

  async release(handle: RefHandle): Promise<void> {
    if (handle.released) return;
    handle.released = true;
    this.#finalizer.unregister(handle);
    const server = this.#server(this.#state(handle.module), handle.ref.server);
    server.live--;
    server.pendingReleases.add(handle.ref.id);
    await this.#flush(handle.module, handle.ref.server);
  }

  /** Sends pending releases, stops timers. Further calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearTimeout(this.#flushTimer);
    clearInterval(this.#renewTimer);
    this.#options.placement.close();
    await this.#options.placement.report().catch(() => {});
    await Promise.allSettled(this.#eachServer().map(([module, id]) => this.#flush(module, id)));
    this.#closed = true;
  }

  #import(module: string, ref: RemoteRef): unknown {
    const handle: RefHandle = { module, ref, released: false };
    this.#finalizer.register(handle, { module, server: ref.server, id: ref.id }, handle);
    const server = this.#server(this.#state(module), ref.server);
    server.live++;
    server.lastCall = Date.now();
    this.#startRenewing();
    return createRemoteProxy({ module, base: handle, steps: [] }, this);
  }

  #collected({ module, server, id }: { module: string; server: string; id: number }): void {
    const state = this.#server(this.#state(module), server);
    state.live--;
    state.pendingReleases.add(id);
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      for (const [m, s] of this.#eachServer()) this.#flush(m, s).catch(() => {});
    }, this.#options.releaseBatchMs ?? 1_000).unref();
  }

  async #flush(module: string, serverId: string): Promise<void> {
    const server = this.#modules.get(module)?.servers.get(serverId);
    if (this.#closed || !server || server.pendingReleases.size === 0) return;
    await this.send(module, [], { route: serverId }).catch((error: unknown) => {
      // A server that is gone took the references with it: nothing is left to release.
      if (error instanceof SpliceError && error.code === Code.NOT_FOUND) server.pendingReleases.clear();
      else throw error;
    });
    if (server.live <= 0 && server.pendingReleases.size === 0)
      this.#modules.get(module)?.servers.delete(serverId);
  }

  /** Keeps the leases of servers holding live references from running out. */
  #startRenewing(): void {
    const period = this.#renewEvery();
    if (this.#renewTimer && period >= this.#renewPeriod) return;
    clearInterval(this.#renewTimer);
    this.#renewPeriod = period;
    const tick = () => {
      const now = Date.now();
      for (const [module, state] of this.#modules) {
        for (const [id, server] of state.servers) {
          if (server.live > 0 && now - server.lastCall > state.leaseMs / 3) {
            this.send(module, [], { route: id }).catch(() => {});
          }
        }
      }
    };
    this.#renewTimer = setInterval(tick, period).unref();
  }

  #renewEvery(): number {
    const leases = [...this.#modules.values()].map((s) => s.leaseMs);
    return Math.max(100, Math.min(...leases) / 4);
  }

  #eachServer(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [module, state] of this.#modules)
      for (const id of state.servers.keys()) out.push([module, id]);
    return out;
  }

  #state(module: string): ModuleState {
    let state = this.#modules.get(module);
    if (!state) {
      state = { leaseMs: 60_000, servers: new Map() };
      this.#modules.set(module, state);
    }
    return state;
  }

  #server(state: ModuleState, id: string): ServerState {
    let server = state.servers.get(id);
    if (!server) {
      server = { live: 0, pendingReleases: new Set(), lastCall: 0 };
      state.servers.set(id, server);
    }
    return server;
  }
}

function refuseByValue(value: object): never {
  throw new SpliceError(
    Code.INVALID_ARGUMENT,
    `cannot send ${describe(value)} to a remote module: pass plain data (objects, arrays, typed arrays, Map, Set, Date, RegExp, errors) or remote references`,
  );
}

/** A local call cannot be stopped, but its caller stops waiting at the deadline or on abort. */
function withDeadline<T>(work: Promise<T>, ms: number, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new SpliceError(Code.DEADLINE_EXCEEDED, `no answer from the local module within ${ms} ms`)),
      ms,
    );
    const onAbort = () => reject(new SpliceError(Code.CANCELLED, 'the call was aborted'));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
  });
}

/** Touches what it is given, so that it stays reachable until this point. */
function keepAlive(values: unknown[]): void {
  if (values.length < 0) throw new Error('unreachable');
}
