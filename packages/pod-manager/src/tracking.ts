/**
 * Call tracking (JSORC's trackact): while on, placement and policy changes and lifecycle actions are
 * recorded in order, and the mean call time of each module is kept.
 */
import type { LifecycleEvent } from './lifecycle.js';
import type { PlacementEvent } from './placement-engine.js';
import type { CallEvent } from './registry.js';

/** One recorded change. */
export type TrackedEvent =
  | (PlacementEvent & { kind: 'placement' })
  | (LifecycleEvent & { kind: 'lifecycle'; at: string });

/** What `GET /tracking` answers. */
export interface TrackingReport {
  active: boolean;
  started_at?: string | undefined;
  events: TrackedEvent[];
  modules: Record<string, { calls: number; mean_ms: number }>;
}

const MAX_EVENTS = 10_000;

export class Tracking {
  #startedAt: number | undefined;
  #active = false;
  #events: TrackedEvent[] = [];
  #calls = new Map<string, { calls: number; totalMs: number }>();

  start(): void {
    this.#active = true;
    this.#startedAt = Date.now();
    this.#events = [];
    this.#calls = new Map();
  }

  stop(): void {
    this.#active = false;
  }

  placement(event: PlacementEvent): void {
    if (this.#active && this.#events.length < MAX_EVENTS) this.#events.push({ kind: 'placement', ...event });
  }

  lifecycle(event: LifecycleEvent): void {
    if (this.#active && this.#events.length < MAX_EVENTS) {
      this.#events.push({ kind: 'lifecycle', at: new Date().toISOString(), ...event });
    }
  }

  call(event: CallEvent): void {
    if (!this.#active) return;
    const c = this.#calls.get(event.module) ?? { calls: 0, totalMs: 0 };
    c.calls++;
    c.totalMs += event.ms;
    this.#calls.set(event.module, c);
  }

  report(): TrackingReport {
    const modules: TrackingReport['modules'] = {};
    for (const [name, c] of this.#calls)
      modules[name] = { calls: c.calls, mean_ms: Math.round((c.totalMs / c.calls) * 1000) / 1000 };
    return {
      active: this.#active,
      started_at: this.#startedAt === undefined ? undefined : new Date(this.#startedAt).toISOString(),
      events: [...this.#events],
      modules,
    };
  }
}
