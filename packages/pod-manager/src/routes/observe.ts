/** Benchmark mode, call tracking and resource usage of module servers. */
import type { FastifyInstance } from 'fastify';
import type { Benchmark } from '../benchmark.js';
import type { ModuleRegistry } from '../registry.js';
import type { Tracking } from '../tracking.js';

/** What the observation routes need. */
export interface ObserveRouteOptions {
  registry: ModuleRegistry;
  benchmark: Benchmark;
  tracking: Tracking;
}

export function observeRoutes(
  app: FastifyInstance,
  { registry, benchmark, tracking }: ObserveRouteOptions,
): void {
  app.post(
    '/benchmark/start',
    { schema: { tags: ['observe'], summary: 'Start benchmark mode' } },
    async () => {
      benchmark.start();
      return benchmark.report();
    },
  );
  app.post('/benchmark/stop', { schema: { tags: ['observe'], summary: 'Stop benchmark mode' } }, async () => {
    benchmark.stop();
    return benchmark.report();
  });
  app.get(
    '/benchmark/report',
    { schema: { tags: ['observe'], summary: 'Throughput and latency percentiles' } },
    async () => benchmark.report(),
  );

  app.post('/tracking/start', { schema: { tags: ['observe'], summary: 'Start call tracking' } }, async () => {
    tracking.start();
    return tracking.report();
  });
  app.post('/tracking/stop', { schema: { tags: ['observe'], summary: 'Stop call tracking' } }, async () => {
    tracking.stop();
    return tracking.report();
  });
  app.get(
    '/tracking',
    { schema: { tags: ['observe'], summary: 'Placement changes and mean call times' } },
    async () => tracking.report(),
  );

  app.get(
    '/usage',
    { schema: { tags: ['observe'], summary: 'CPU and memory of every module server' } },
    async () => ({
      modules: Object.fromEntries(
        await Promise.all(
          registry.names().map(async (name) => [name, await registry.backend.usage(name)] as const),
        ),
      ),
    }),
  );
}
