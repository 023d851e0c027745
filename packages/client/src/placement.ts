/**
 * Where this client runs each module's new calls: through the pod-manager (remote) or in this
 * process (local), as the pod-manager's policy decides. The client asks once per module, then
 * follows the placement every answer carries and the one its periodic statistics report returns.
 * A module placed local is imported here and run with the module-server's own runtime, so the
 * proxy API and its semantics (values by copy, references, errors) do not change.
 */
import { randomBytes } from 'node:crypto';
import { Code, Rest, SpliceError } from '@splice-orc/protocol';
import { createInvocationHandler, type InvocationResult, ObjectTable, rootOf } from '@splice-orc/runtime';
import type { Transport } from './transport.js';

/** Where a module's calls run. */
export type Placement = Rest.Placement;

/** A module imported into this process. */
export interface LocalHost {
  /** Instance id carried by the references it makes, like a module-server's. */
  serverId: string;
  handle(payload: Uint8Array): Promise<InvocationResult>;
}

/** Options of {@link PlacementTracker}. */
export interface PlacementOptions {
  transport: Transport;
  /** Imports a module for local placement. */
  importModule: (name: string) => Promise<unknown>;
  /** Memory this client gives local modules, bytes (reported to the policy). */
  memoryBudget: number | undefined;
  /** How often call statistics are reported, ms; 0 = never. */
  reportIntervalMs: number;
  timeoutMs: number;
}

/** One module's counts since the last report, in the report's own shape. */
type Counters = Rest.StatsReport['modules'][string] & { local: Rest.CallCounts; remote: Rest.CallCounts };

/** The client's view of placements, its local hosts and its call statistics. */
export class PlacementTracker {
  readonly #placements = new Map<string, Placement>();
  readonly #asked = new Map<string, Promise<Placement>>();
  readonly #hosts = new Map<string, Promise<LocalHost>>();
  readonly #localIds = new Set<string>();
  readonly #unavailable = new Set<string>();
  #counters = new Map<string, Counters>();
  #timer: NodeJS.Timeout | undefined;
  readonly #options: PlacementOptions;

  constructor(options: PlacementOptions) {
    this.#options = options;
  }

  /** The module's placement, asked of the pod-manager the first time. */
  placement(module: string): Placement | Promise<Placement> {
    if (this.#unavailable.has(module)) return 'remote';
    const known = this.#placements.get(module);
    if (known) return known;
    let asking = this.#asked.get(module);
    if (!asking) {
      asking = this.#options.transport
        .json('GET', Rest.Paths.placement(module), {
          timeoutMs: this.#options.timeoutMs,
        })
        .then((view) => {
          const placement = (view as Rest.PlacementAnswer).placement === 'local' ? 'local' : 'remote';
          if (!this.#placements.has(module)) this.#placements.set(module, placement);
          return this.#placements.get(module)!;
        })
        .finally(() => this.#asked.delete(module));
      this.#asked.set(module, asking);
    }
    return asking;
  }

  /** Follows what the pod-manager said (an answer's header, a report's response). */
  update(module: string, placement: string | undefined): void {
    if (placement === 'local' || placement === 'remote') this.#placements.set(module, placement);
  }

  /** True when references of this instance id live in this process. */
  isLocal(serverId: string): boolean {
    return this.#localIds.has(serverId);
  }

  /** The module imported into this process (once). */
  host(module: string, leaseMs: number): Promise<LocalHost> {
    let host = this.#hosts.get(module);
    if (!host) {
      host = this.#load(module, leaseMs);
      host.catch(() => this.#hosts.delete(module));
      this.#hosts.set(module, host);
    }
    return host;
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

  /** True when the module is known not to be importable here (warned about once). */
  isUnavailable(module: string): boolean {
    return this.#unavailable.has(module);
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

  async #load(module: string, leaseMs: number): Promise<LocalHost> {
    let namespace: unknown;
    try {
      namespace = await this.#options.importModule(module);
    } catch (cause) {
      throw new SpliceError(
        Code.FAILED_PRECONDITION,
        `module ${module} is placed local but cannot be imported in this process (${(cause as Error).message}); install it in the app, pass connect({ importModule }), or set its load_type to remote`,
        { cause },
      );
    }
    const serverId = `local-${randomBytes(6).toString('hex')}`;
    const table = new ObjectTable({ leaseMs });
    table.startSweeping();
    this.#localIds.add(serverId);
    const handle = createInvocationHandler({
      root: rootOf(namespace as Record<string, unknown>),
      table,
      serverId,
    });
    return { serverId, handle };
  }
}
