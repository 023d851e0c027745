/**
 * Runs the placement policy: keeps each module's mode (load_type, or the mode set at runtime), the
 * call statistics clients report, the decisions and their history, and re-evaluates periodically.
 */
import type { Rest } from '@splice-orc/protocol';
import type { ModuleSpec } from '../config.js';
import {
  type Decision,
  decide,
  type ModuleCallStats,
  type Placement,
  type PolicySettings,
} from './policy.js';

/** What a client reports (`POST /stats`): calls per module since its last report. */
export type ClientReport = Rest.StatsReport;

/** A change of placement or of policy, for call tracking. */
export interface PlacementEvent {
  at: string;
  module?: string | undefined;
  from?: Placement | undefined;
  to?: Placement | undefined;
  policy: string;
  reason: string;
}

/** Options of {@link PlacementEngine}. */
export interface PlacementEngineOptions {
  settings: PolicySettings;
  modes: Record<string, ModuleSpec['loadType']>;
  specs: () => ModuleSpec[];
  onEvent?: (event: PlacementEvent) => void;
  /** Called when a periodic evaluation fails (the timer itself never throws). */
  onError?: (error: unknown) => void;
}

/** The placement state of the pod-manager. */
export class PlacementEngine {
  #settings: PolicySettings;
  readonly #modes: Map<string, ModuleSpec['loadType']>;
  readonly #decisions = new Map<string, Decision>();
  #stats = new Map<string, ModuleCallStats>();
  #history = new Map<string, ModuleCallStats>();
  /**
   * The smallest memory budget reported in this window. Reports are folded into aggregates as they
   * arrive (per module sums, this minimum), so any number of clients takes constant memory.
   */
  #windowBudget: number | undefined;
  #budget: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #options: PlacementEngineOptions;

  constructor(options: PlacementEngineOptions) {
    this.#options = options;
    this.#settings = options.settings;
    this.#modes = new Map(Object.entries(options.modes));
    this.decide();
  }

  get settings(): PolicySettings {
    return this.#settings;
  }

  /** Replaces the policy, re-evaluates at once and restarts the periodic evaluation. */
  setPolicy(settings: PolicySettings): void {
    const before = this.#settings.name;
    this.#settings = settings;
    this.#options.onEvent?.({
      at: new Date().toISOString(),
      policy: settings.name,
      reason: `policy ${before} -> ${settings.name}`,
    });
    this.decide();
    if (this.#timer) this.start();
  }

  /** A module's mode: its load_type, or what `load {mode}` set. */
  mode(spec: ModuleSpec): ModuleSpec['loadType'] {
    return this.#modes.get(spec.name) ?? spec.loadType;
  }

  /** Sets a module's mode; what was learnt about it (e.g. that a client cannot import it) is reset. */
  setMode(name: string, mode: ModuleSpec['loadType']): void {
    this.#modes.set(name, mode);
    this.#history.delete(name);
    this.decide();
  }

  modes(): Record<string, ModuleSpec['loadType']> {
    return Object.fromEntries(this.#modes);
  }

  /** The module's placement and why. */
  decision(name: string): Decision {
    return this.#decisions.get(name) ?? { placement: 'remote', reason: 'not evaluated yet' };
  }

  /** Every module's placement. */
  placements(): Record<string, Placement> {
    return Object.fromEntries([...this.#decisions].map(([name, d]) => [name, d.placement]));
  }

  /** Adds a client's report to the statistics of the current window. */
  report(report: ClientReport, known: (name: string) => boolean): void {
    if (report.memory_budget !== undefined) {
      this.#windowBudget = Math.min(this.#windowBudget ?? Number.POSITIVE_INFINITY, report.memory_budget);
    }
    for (const [name, r] of Object.entries(report.modules)) {
      // A client may still report a module removed from the config: skip it, keep the rest.
      if (!known(name)) continue;
      const s = this.#stats.get(name) ?? {
        local: { calls: 0, totalMs: 0 },
        remote: { calls: 0, totalMs: 0 },
        localUnavailable: false,
      };
      s.local.calls += r.local?.calls ?? 0;
      s.local.totalMs += r.local?.total_ms ?? 0;
      s.remote.calls += r.remote?.calls ?? 0;
      s.remote.totalMs += r.remote?.total_ms ?? 0;
      s.localUnavailable ||= r.local_unavailable === true;
      this.#stats.set(name, s);
    }
  }

  /** Decides every module's placement from the window's statistics, then opens a new window. */
  evaluate(): void {
    // Each window's statistics are added to the decayed history (half-life: one interval), so a
    // quiet window or a single client does not flip a placement back and forth.
    for (const [name, w] of this.#stats) {
      const h = this.#history.get(name);
      this.#history.set(name, {
        local: {
          calls: decay(h?.local.calls) + w.local.calls,
          totalMs: decay(h?.local.totalMs) + w.local.totalMs,
        },
        remote: {
          calls: decay(h?.remote.calls) + w.remote.calls,
          totalMs: decay(h?.remote.totalMs) + w.remote.totalMs,
        },
        localUnavailable: (h?.localUnavailable ?? false) || w.localUnavailable,
      });
    }
    for (const [name, h] of this.#history) {
      if (!this.#stats.has(name)) {
        this.#history.set(name, {
          local: { calls: decay(h.local.calls), totalMs: decay(h.local.totalMs) },
          remote: { calls: decay(h.remote.calls), totalMs: decay(h.remote.totalMs) },
          localUnavailable: h.localUnavailable,
        });
      }
    }
    this.#budget = this.#windowBudget ?? this.#budget;
    this.#stats = new Map();
    this.#windowBudget = undefined;
    this.decide();
  }

  /** Decides every module's placement from the history, without closing the window. */
  decide(): void {
    const specs = this.#options.specs();
    const decisions = decide(this.#settings, {
      modules: specs.map((s) => ({ ...s, mode: this.mode(s) })),
      stats: this.#history,
      clientBudget: this.#budget,
      current: new Map([...this.#decisions].map(([k, d]) => [k, d.placement])),
    });
    for (const [name, decision] of decisions) {
      const before = this.#decisions.get(name);
      this.#decisions.set(name, decision);
      if (before?.placement !== decision.placement) {
        this.#options.onEvent?.({
          at: new Date().toISOString(),
          module: name,
          from: before?.placement,
          to: decision.placement,
          policy: this.#settings.name,
          reason: decision.reason,
        });
      }
    }
  }

  /** Re-evaluates every policy interval. */
  start(): void {
    clearInterval(this.#timer);
    this.#timer = setInterval(() => {
      try {
        this.evaluate();
      } catch (error) {
        this.#options.onError?.(error);
      }
    }, this.#settings.interval_s * 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function decay(x: number | undefined): number {
  return (x ?? 0) / 2;
}
