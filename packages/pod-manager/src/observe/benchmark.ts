/**
 * Benchmark mode (JSORC's benchmark): while on, every forwarded call's latency is recorded, and
 * the report gives throughput and latency percentiles per module and overall. Latencies go into
 * HDR histograms (node:perf_hooks), not lists: memory stays constant however many calls come.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { CallEvent } from '../orchestration/registry.js';

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

interface Samples {
  /** Latencies in microseconds (HDR: 3 significant digits). */
  histogram: RecordableHistogram;
  errors: number;
}

export class Benchmark {
  #startedAt: number | undefined;
  #stoppedAt: number | undefined;
  #modules = new Map<string, Samples>();
  #overall = samples();

  get active(): boolean {
    return this.#startedAt !== undefined && this.#stoppedAt === undefined;
  }

  /** Starts (or restarts) a benchmark: earlier samples are dropped. */
  start(): void {
    this.#startedAt = Date.now();
    this.#stoppedAt = undefined;
    this.#modules = new Map();
    this.#overall = samples();
  }

  stop(): void {
    if (this.active) this.#stoppedAt = Date.now();
  }

  /** Records a finished call (modules are the configured ones, so the map stays bounded). */
  record(event: CallEvent): void {
    if (!this.active) return;
    let s = this.#modules.get(event.module);
    if (!s) {
      s = samples();
      this.#modules.set(event.module, s);
    }
    const us = Math.max(1, Math.round(event.ms * 1000));
    for (const target of [s, this.#overall]) {
      target.histogram.record(us);
      if (event.outcome !== 'ok') target.errors++;
    }
  }

  report(): BenchmarkReport {
    const end = this.#stoppedAt ?? Date.now();
    const seconds = this.#startedAt === undefined ? 0 : (end - this.#startedAt) / 1000;
    const modules: Record<string, BenchmarkFigures> = {};
    for (const [name, s] of this.#modules) modules[name] = figures(s, seconds);
    return {
      active: this.active,
      started_at: this.#startedAt === undefined ? undefined : new Date(this.#startedAt).toISOString(),
      duration_s: round(seconds),
      overall: figures(this.#overall, seconds),
      modules,
    };
  }
}

function samples(): Samples {
  return { histogram: createHistogram(), errors: 0 };
}

function figures({ histogram, errors }: Samples, seconds: number): BenchmarkFigures {
  const calls = histogram.count;
  const ms = (us: number) => (calls > 0 ? round(us / 1000) : 0);
  return {
    calls,
    errors,
    throughput: round(seconds > 0 ? calls / seconds : 0),
    mean_ms: ms(histogram.mean),
    p50_ms: ms(histogram.percentile(50)),
    p90_ms: ms(histogram.percentile(90)),
    p95_ms: ms(histogram.percentile(95)),
    p99_ms: ms(histogram.percentile(99)),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
