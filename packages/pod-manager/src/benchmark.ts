/**
 * Benchmark mode (JSORC's benchmark): while on, every forwarded call's latency is kept, and the
 * report gives throughput and latency percentiles per module and overall.
 */
import type { CallEvent } from './registry.js';

/** Figures of one module, or of all of them. */
export interface BenchmarkFigures {
  calls: number;
  errors: number;
  /** Calls per second over the benchmark's duration. */
  throughput: number;
  mean_ms: number;
  p50_ms: number;
  p90_ms: number;
  p95_ms: number;
  p99_ms: number;
}

/** What `GET /benchmark/report` answers. */
export interface BenchmarkReport {
  active: boolean;
  started_at?: string | undefined;
  duration_s: number;
  overall: BenchmarkFigures;
  modules: Record<string, BenchmarkFigures>;
}

/** Most samples kept per module, so a forgotten benchmark cannot exhaust memory. */
const MAX_SAMPLES = 1_000_000;

export class Benchmark {
  #startedAt: number | undefined;
  #stoppedAt: number | undefined;
  #samples = new Map<string, { ms: number[]; errors: number }>();

  get active(): boolean {
    return this.#startedAt !== undefined && this.#stoppedAt === undefined;
  }

  /** Starts (or restarts) a benchmark: earlier samples are dropped. */
  start(): void {
    this.#startedAt = Date.now();
    this.#stoppedAt = undefined;
    this.#samples = new Map();
  }

  stop(): void {
    if (this.active) this.#stoppedAt = Date.now();
  }

  record(event: CallEvent): void {
    if (!this.active) return;
    let s = this.#samples.get(event.module);
    if (!s) {
      s = { ms: [], errors: 0 };
      this.#samples.set(event.module, s);
    }
    if (s.ms.length < MAX_SAMPLES) s.ms.push(event.ms);
    if (event.outcome !== 'ok') s.errors++;
  }

  report(): BenchmarkReport {
    const end = this.#stoppedAt ?? Date.now();
    const seconds = this.#startedAt === undefined ? 0 : (end - this.#startedAt) / 1000;
    const modules: Record<string, BenchmarkFigures> = {};
    const all: number[] = [];
    let errors = 0;
    for (const [name, s] of this.#samples) {
      modules[name] = figures(s.ms, s.errors, seconds);
      all.push(...s.ms);
      errors += s.errors;
    }
    return {
      active: this.active,
      started_at: this.#startedAt === undefined ? undefined : new Date(this.#startedAt).toISOString(),
      duration_s: round(seconds),
      overall: figures(all, errors, seconds),
      modules,
    };
  }
}

function figures(samples: number[], errors: number, seconds: number): BenchmarkFigures {
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0;
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : 0;
  return {
    calls: sorted.length,
    errors,
    throughput: round(seconds > 0 ? sorted.length / seconds : 0),
    mean_ms: round(mean),
    p50_ms: round(at(50)),
    p90_ms: round(at(90)),
    p95_ms: round(at(95)),
    p99_ms: round(at(99)),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
