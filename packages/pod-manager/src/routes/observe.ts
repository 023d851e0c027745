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
  app.post('/benchmark/start', async () => {
    benchmark.start();
    return benchmark.report();
  });
  app.post('/benchmark/stop', async () => {
    benchmark.stop();
    return benchmark.report();
  });
  app.get('/benchmark/report', async () => benchmark.report());

  app.post('/tracking/start', async () => {
    tracking.start();
    return tracking.report();
  });
  app.post('/tracking/stop', async () => {
    tracking.stop();
    return tracking.report();
  });
  app.get('/tracking', async () => tracking.report());

  app.get('/usage', async () => ({
    modules: Object.fromEntries(
      await Promise.all(
        registry.names().map(async (name) => [name, await registry.backend.usage(name)] as const),
      ),
    ),
  }));
}
