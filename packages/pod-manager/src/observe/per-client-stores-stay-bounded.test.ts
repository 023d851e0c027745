/**
 * Regression: stores fed by clients crashed or failed the pod-manager under load (300 000
 * `POST /stats` reports crashed it from a timer; `GET /benchmark/report` answered 500 after
 * 160 000 calls). Each store now aggregates as it goes and keeps constant memory.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { PlacementEngine } from '../placement/engine.js';
import { Benchmark } from './benchmark.js';
import { Tracking } from './tracking.js';

describe('per-client stores', () => {
  it('PlacementEngine folds 300 000 reports into its window and evaluates without throwing', () => {
    const specs = [
      ...parseConfig({
        module_config: { m: { load_type: 'auto', lib_mem_size_req: '1100k' } },
      }).modules.values(),
    ];
    const errors: unknown[] = [];
    const engine = new PlacementEngine({
      settings: { name: 'adaptive', interval_s: 30, client_memory_budget: '512Mi', min_gain_ms: 0.2 },
      modes: {},
      specs: () => specs,
      onError: (error) => errors.push(error),
    });
    for (let i = 0; i < 300_000; i++) {
      engine.report(
        {
          memory_budget: 1_000_000 + i,
          modules: { m: { remote: { calls: 1, total_ms: 2 }, local: { calls: 1, total_ms: 0.01 } } },
        },
        () => true,
      );
    }
    expect(() => engine.evaluate()).not.toThrow();
    expect(errors).toEqual([]);
    // The smallest budget reported (1 MB) is below what the module needs (1.1 MB): it stays remote.
    expect(engine.decision('m')).toMatchObject({
      placement: 'remote',
      reason: expect.stringMatching(/would exceed the client memory budget/),
    });
  });

  it('Benchmark reports percentiles after 2 000 000 calls, from histograms', () => {
    const benchmark = new Benchmark();
    benchmark.start();
    for (let i = 0; i < 2_000_000; i++) {
      benchmark.record({
        module: i % 2 ? 'a' : 'b',
        ms: (i % 100) + 1,
        ...(i % 1000 ? { outcome: 'ok', code: 'OK' } : { outcome: 'error', code: 'INTERNAL' }),
      });
    }
    benchmark.stop();
    const report = benchmark.report();
    expect(report.overall.calls).toBe(2_000_000);
    expect(report.overall.errors).toBe(2_000);
    expect(report.modules.a?.calls).toBe(1_000_000);
    // 1..100 ms uniformly: the median is near 50 ms, p99 near 99 ms (HDR keeps 3 significant digits).
    expect(report.overall.p50_ms).toBeGreaterThan(49);
    expect(report.overall.p50_ms).toBeLessThan(51.1);
    expect(report.overall.p99_ms).toBeGreaterThan(98);
    expect(report.overall.p99_ms).toBeLessThan(100.1);
    expect(report.overall.mean_ms).toBeCloseTo(50.5, 0);
  });

  it('Tracking keeps the latest 10 000 events and counts the ones it dropped', () => {
    const tracking = new Tracking();
    tracking.start();
    for (let i = 0; i < 25_000; i++) {
      tracking.lifecycle({ module: 'm', action: 'scale-up', reason: String(i) });
    }
    const report = tracking.report();
    expect(report.events).toHaveLength(10_000);
    expect(report.dropped_events).toBe(15_000);
    expect(report.events.at(-1)).toMatchObject({ reason: '24999' });
    expect(report.events[0]).toMatchObject({ reason: '15000' });
  });
});
