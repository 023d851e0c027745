/**
 * Where this client runs each module's new calls: through the pod-manager (the HTTP link) or in
 * this process (the local link), as the pod-manager's policy decides. A module's first calls go to
 * the pod-manager marked `x-splice-if-remote`: it runs them if the module's calls run remotely and
 * otherwise answers PLACED_LOCAL (nothing ran), so the placement costs no round trip of its own.
 * Then the client follows the placement every answer carries and the one its periodic statistics
 * report returns. Calls on references go where their references live.
 */
import { Code, Rest, SpliceError } from '@splice-orc/protocol';
import { type BatchLimits, createHttpLink } from './http-link.js';
import type { Link } from './link.js';
import { LocalLink } from './local-link.js';
import type { Transport } from './transport.js';

/** Where a module's calls run. */
export type Placement = Rest.Placement;

/** Options of {@link PlacementTracker}. */
export interface PlacementOptions {
  transport: Transport;
  /** Where callback exchanges go (long polls on connections that never keep the process alive). */
  callbackTransport?: Transport | undefined;
  /** Imports a module for local placement. */
  importModule: (name: string) => Promise<unknown>;
  /** Memory this client gives local modules, bytes (reported to the policy). */
  memoryBudget: number | undefined;
  /** How often call statistics are reported, ms; 0 = never. */
  reportIntervalMs: number;
  timeoutMs: number;
  /** Auto-batching of the HTTP link (default on). */
  batch?: boolean | BatchLimits | undefined;
}

/** One module's counts since the last report, in the report's own shape. */
type Counters = Rest.StatsReport['modules'][string] & { local: Rest.CallCounts; remote: Rest.CallCounts };

/** The client's view of placements, its links and its call statistics. */
export class PlacementTracker {
  readonly #placements = new Map<string, Placement>();
  readonly #unavailable = new Set<string>();
  readonly #remote: ReturnType<typeof createHttpLink>;
  readonly #local: LocalLink;
  #counters = new Map<string, Counters>();
  #timer: NodeJS.Timeout | undefined;
  readonly #options: PlacementOptions;

  constructor(options: PlacementOptions) {
    this.#options = options;
    const record = (module: string, where: Placement, ms: number) => this.record(module, where, ms);
    this.#remote = createHttpLink({
      transport: options.transport,
      callbackTransport: options.callbackTransport,
      record,
      follow: (module, placement) => this.update(module, placement),
      batch: options.batch,
    });
    this.#local = new LocalLink({ importModule: options.importModule, record });
  }

  /**
   * The link a program of the module goes over: the one its references live behind, else the one
   * of the module's placement. A module placed local that cannot be imported here runs remotely,
   * with one warning, and is reported to the policy.
   */
  async linkFor(module: string, route: string | undefined, leaseMs: number): Promise<Link> {
    if (route) return this.#local.owns(route) ? this.#local : this.#remote;
    const placement = this.placement(module);
    if (placement === undefined) return this.#firstCall(leaseMs);
    if (placement !== 'local') return this.#remote;
    try {
      await this.#local.prepare(module, leaseMs);
      return this.#local;
    } catch (error) {
      process.emitWarning((error as Error).message, { code: 'SPLICE_LOCAL_UNAVAILABLE' });
      this.localUnavailable(module);
      return this.#remote;
    }
  }

  /**
   * Sends a `callbacks` exchange (INVOKE.md 3.7) through the pod-manager. Callbacks need a
   * module-server: a call that passes functions runs there even when the module is placed local,
   * unless it uses references held in this process, which it cannot.
   */
  exchangeCallbacks(
    module: string,
    body: Uint8Array,
    options: { timeoutMs: number; route?: string | undefined; longPoll?: boolean },
  ): Promise<Uint8Array> {
    if (options.route && this.#local.owns(options.route)) return Promise.reject(localCallbacks(module));
    return this.#remote.exchangeCallbacks(module, body, options);
  }

  /** Refuses callbacks for a call on references held in this process. */
  checkCallbackRoute(module: string, route: string | undefined): void {
    if (route && this.#local.owns(route)) throw localCallbacks(module);
  }

  /** The module's placement, if the pod-manager has said it. */
  placement(module: string): Placement | undefined {
    if (this.#unavailable.has(module)) return 'remote';
    return this.#placements.get(module);
  }

  /**
   * A module's first calls: run by the pod-manager if its calls run remotely; if they are placed
   * here instead, the pod-manager answers PLACED_LOCAL, which the placement follows, and the call
   * goes over the link that placement gives.
   */
  #firstCall(leaseMs: number): Link {
    return {
      invoke: async (module, body, options) => {
        try {
          return await this.#remote.invoke(module, body, { ...options, ifRemote: true });
        } catch (error) {
          if ((error as { details?: { reason?: unknown } }).details?.reason !== 'PLACED_LOCAL') throw error;
          this.update(module, 'local');
          return (await this.linkFor(module, undefined, leaseMs)).invoke(module, body, options);
        }
      },
    };
  }

  /** Follows what the pod-manager said (an answer's header, a report's response). */
  update(module: string, placement: string | undefined): void {
    if (this.#unavailable.has(module)) return;
    if (placement === 'local' || placement === 'remote') this.#placements.set(module, placement);
  }

  /** Counts a call for the policy's statistics. */
  record(module: string, where: Placement, ms: number): void {
    const c = this.#countersOf(module);
    c[where].calls++;
    c[where].total_ms += Math.max(0, ms);
    if (this.#unavailable.has(module)) c.local_unavailable = true;
    this.#startReporting();
  }

  /** Notes that the module could not be imported here: its calls go remote from now on. */
  localUnavailable(module: string): void {
    this.#unavailable.add(module);
    this.#countersOf(module).local_unavailable = true;
    this.#placements.set(module, 'remote');
  }

  /** Sends the statistics gathered since the last report and follows the placements returned. */
  async report(): Promise<void> {
    if (this.#counters.size === 0) return;
    const modules = Object.fromEntries(this.#counters);
    this.#counters = new Map();
    const body: Rest.StatsReport = { memory_budget: this.#options.memoryBudget, modules };
    const answer = (await this.#options.transport.json(
      'POST',
      Rest.Paths.stats,
      { timeoutMs: this.#options.timeoutMs },
      body,
    )) as Rest.StatsAnswer;
    for (const [module, placement] of Object.entries(answer.placements ?? {})) this.update(module, placement);
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #startReporting(): void {
    if (this.#timer || this.#options.reportIntervalMs <= 0) return;
    this.#timer = setInterval(() => this.report().catch(() => {}), this.#options.reportIntervalMs);
    this.#timer.unref();
  }

  #countersOf(module: string): Counters {
    let c = this.#counters.get(module);
    if (!c) {
      c = { local: { calls: 0, total_ms: 0 }, remote: { calls: 0, total_ms: 0 } };
      this.#counters.set(module, c);
    }
    return c;
  }
}

function localCallbacks(module: string): SpliceError {
  return new SpliceError(
    Code.FAILED_PRECONDITION,
    `this call uses references of ${module} held in this process (placed local): functions can be passed only to a module that runs on a module-server`,
  );
}
