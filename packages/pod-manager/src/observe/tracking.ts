/**
 * Call tracking (JSORC's trackact): while on, placement and policy changes and lifecycle actions are
 * recorded in order, and the mean call time of each module is kept. Only the latest 10 000 events
 * are kept (the report says how many were dropped); call times are kept as sums per module.
 */
import type { LifecycleEvent } from '../orchestration/lifecycle.js';
import type { CallEvent } from '../orchestration/registry.js';
import type { PlacementEvent } from '../placement/engine.js';

/** One recorded change. */
export type TrackedEvent =
  | (PlacementEvent & { kind: 'placement' })
  | (LifecycleEvent & { kind: 'lifecycle'; at: string });

/** What `GET /tracking` answers. */
export interface TrackingReport {
  active: boolean;
  started_at?: string | undefined;
  events: TrackedEvent[];
  /** Older events dropped to keep the latest MAX_EVENTS. */
  dropped_events: number;
  modules: Record<string, { calls: number; mean_ms: number }>;
}

const MAX_EVENTS = 10_000;

export class Tracking {
  #startedAt: number | undefined;
  #active = false;
  #events: TrackedEvent[] = [];
  #dropped = 0;
  #calls = new Map<string, { calls: number; totalMs: number }>();

  start(): void {
    this.#active = true;
    this.#startedAt = Date.now();
    this.#events = [];
    this.#dropped = 0;
    this.#calls = new Map();
  }

  stop(): void {
    this.#active = false;
  }

  placement(event: PlacementEvent): void {
    if (this.#active) this.#add({ kind: 'placement', ...event });
  }

  lifecycle(event: LifecycleEvent): void {
    if (this.#active) this.#add({ kind: 'lifecycle', at: new Date().toISOString(), ...event });
  }

  #add(event: TrackedEvent): void {
    this.#events.push(event);
    // Dropped in blocks, so that a long run does not shift the array on every event.
    if (this.#events.length >= MAX_EVENTS + MAX_EVENTS / 10) {
      const excess = this.#events.length - MAX_EVENTS;
      this.#events.splice(0, excess);
      this.#dropped += excess;
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
      events: this.#events.slice(-MAX_EVENTS),
      dropped_events: this.#dropped + Math.max(0, this.#events.length - MAX_EVENTS),
      modules,
    };
  }
}
