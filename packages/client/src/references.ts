/**
 * The lifetimes of the remote references a client holds. References are released explicitly, by
 * `await using`, or when the garbage collector finds no proxy uses them (FinalizationRegistry,
 * batched); while any is live on a module-server the client renews its lease there, so the server
 * keeps them exactly as long as this process wants them. Releases ride on the next program sent to
 * that server, or go alone.
 */
import { Code, type Op, type RemoteRef, SpliceError } from '@splice-orc/protocol';
import type { RefHandle } from './remote-proxy.js';

/** Sends a program to a module-server instance (the session's send). */
export type ProgramSender = (module: string, ops: Op[], options: { route: string }) => Promise<unknown>;

/** Options of {@link References}. */
export interface ReferencesOptions {
  send: ProgramSender;
  /** How long GC-found releases wait to be sent together, ms. */
  releaseBatchMs: number;
}

/** What the client holds on one module-server instance. */
interface ServerState {
  live: number;
  pendingReleases: Set<number>;
  lastCall: number;
}

interface ModuleState {
  leaseMs: number;
  servers: Map<string, ServerState>;
}

/** Default lease until a server says otherwise, ms. */
const DEFAULT_LEASE_MS = 60_000;

/** The references of one client, by module and server instance. */
export class References {
  readonly #options: ReferencesOptions;
  readonly #modules = new Map<string, ModuleState>();
  readonly #finalizer = new FinalizationRegistry<{ module: string; server: string; id: number }>((held) =>
    this.#collected(held),
  );
  #flushTimer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #renewPeriod = Number.POSITIVE_INFINITY;
  #closed = false;

  constructor(options: ReferencesOptions) {
    this.#options = options;
  }

  /** The lease a module's servers gave, ms. */
  leaseOf(module: string): number {
    return this.#modules.get(module)?.leaseMs ?? DEFAULT_LEASE_MS;
  }

  /** Takes the releases waiting for a server, to append to a program sent there. */
  takeReleases(module: string, server: string): number[] {
    const state = this.#server(module, server);
    const ids = [...state.pendingReleases];
    state.pendingReleases.clear();
    return ids;
  }

  /** Gives back releases whose program was not delivered. */
  restoreReleases(module: string, server: string, ids: readonly number[]): void {
    const state = this.#server(module, server);
    for (const id of ids) state.pendingReleases.add(id);
  }

  /** Notes an answer from a server: a call renews the lease, and the lease may have changed. */
  answered(module: string, server: string | undefined, leaseMs: number): void {
    if (server) this.#server(module, server).lastCall = Date.now();
    const state = this.#module(module);
    if (state.leaseMs !== leaseMs) {
      state.leaseMs = leaseMs;
      this.#startRenewing();
    }
  }

  /** Takes ownership of a reference that arrived in an answer. */
  adopt(module: string, ref: RemoteRef): RefHandle {
    const handle: RefHandle = { module, ref, released: false };
    this.#finalizer.register(handle, { module, server: ref.server, id: ref.id }, handle);
    const server = this.#server(module, ref.server);
    server.live++;
    server.lastCall = Date.now();
    this.#startRenewing();
    return handle;
  }

  /** Releases a reference now (idempotent). */
  async release(handle: RefHandle): Promise<void> {
    if (handle.released) return;
    handle.released = true;
    this.#finalizer.unregister(handle);
    const server = this.#server(handle.module, handle.ref.server);
    server.live--;
    server.pendingReleases.add(handle.ref.id);
    await this.#flush(handle.module, handle.ref.server);
  }

  /** Sends every pending release and stops the timers; nothing is sent after. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearTimeout(this.#flushTimer);
    clearInterval(this.#renewTimer);
    await Promise.allSettled(this.#eachServer().map(([module, id]) => this.#flush(module, id)));
    this.#closed = true;
  }

  #collected({ module, server, id }: { module: string; server: string; id: number }): void {
    const state = this.#server(module, server);
    state.live--;
    state.pendingReleases.add(id);
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      for (const [m, s] of this.#eachServer()) this.#flush(m, s).catch(() => {});
    }, this.#options.releaseBatchMs).unref();
  }

  async #flush(module: string, serverId: string): Promise<void> {
    const server = this.#modules.get(module)?.servers.get(serverId);
    if (this.#closed || !server || server.pendingReleases.size === 0) return;
    await this.#options.send(module, [], { route: serverId }).catch((error: unknown) => {
      // A server that is gone took the references with it: nothing is left to release.
      if (error instanceof SpliceError && error.code === Code.NOT_FOUND) server.pendingReleases.clear();
      else throw error;
    });
    if (server.live <= 0 && server.pendingReleases.size === 0)
      this.#modules.get(module)?.servers.delete(serverId);
  }

  /** Keeps the leases of servers holding live references from running out. */
  #startRenewing(): void {
    const period = Math.max(100, Math.min(...[...this.#modules.values()].map((s) => s.leaseMs)) / 4);
    if (this.#renewTimer && period >= this.#renewPeriod) return;
    clearInterval(this.#renewTimer);
    this.#renewPeriod = period;
    const tick = () => {
      const now = Date.now();
      for (const [module, state] of this.#modules) {
        for (const [id, server] of state.servers) {
          if (server.live > 0 && now - server.lastCall > state.leaseMs / 3) {
            this.#options.send(module, [], { route: id }).catch(() => {});
          }
        }
      }
    };
    this.#renewTimer = setInterval(tick, period).unref();
  }

  #eachServer(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [module, state] of this.#modules)
      for (const id of state.servers.keys()) out.push([module, id]);
    return out;
  }

  #module(module: string): ModuleState {
    let state = this.#modules.get(module);
    if (!state) {
      state = { leaseMs: DEFAULT_LEASE_MS, servers: new Map() };
      this.#modules.set(module, state);
    }
    return state;
  }

  #server(module: string, id: string): ServerState {
    const state = this.#module(module);
    let server = state.servers.get(id);
    if (!server) {
      server = { live: 0, pendingReleases: new Set(), lastCall: 0 };
      state.servers.set(id, server);
    }
    return server;
  }
}
