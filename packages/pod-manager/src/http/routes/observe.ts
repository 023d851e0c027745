/** Benchmark mode, call tracking and resource usage of module servers. */
import { Rest } from '@splice-orc/protocol';
import type { FastifyInstance } from 'fastify';
import type { Benchmark } from '../../observe/benchmark.js';
import type { Tracking } from '../../observe/tracking.js';
import type { ModuleRegistry } from '../../orchestration/registry.js';
import { ALWAYS, responses } from '../responses.js';

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
    {
      schema: {
        tags: ['observe'],
        summary: 'Start benchmark mode',
        response: responses(Rest.BenchmarkReport, ALWAYS),
      },
    },
    async () => {
      benchmark.start();
      return benchmark.report();
    },
  );
  app.post(
    '/benchmark/stop',
    {
      schema: {
        tags: ['observe'],
        summary: 'Stop benchmark mode',
        response: responses(Rest.BenchmarkReport, ALWAYS),
      },
    },
    async () => {
      benchmark.stop();
      return benchmark.report();
    },
  );
  app.get(
    '/benchmark/report',
    {
      schema: {
        tags: ['observe'],
        summary: 'Throughput and latency percentiles',
        response: responses(Rest.BenchmarkReport, ALWAYS),
      },
    },
    async () => benchmark.report(),
  );

  app.post(
    '/tracking/start',
    {
      schema: {
        tags: ['observe'],
        summary: 'Start call tracking',
        response: responses(Rest.TrackingReport, ALWAYS),
      },
    },
    async () => {
      tracking.start();
      return tracking.report();
    },
  );
  app.post(
    '/tracking/stop',
    {
      schema: {
        tags: ['observe'],
        summary: 'Stop call tracking',
        response: responses(Rest.TrackingReport, ALWAYS),
      },
    },
    async () => {
      tracking.stop();
      return tracking.report();
    },
  );
  app.get(
    '/tracking',
    {
      schema: {
        tags: ['observe'],
        summary: 'Placement changes and mean call times',
        response: responses(Rest.TrackingReport, ALWAYS),
      },
    },
    async () => tracking.report(),
  );

  app.get(
    '/usage',
    {
      schema: {
        tags: ['observe'],
        summary: 'CPU and memory of every module server',
        response: responses(Rest.UsageAnswer, ALWAYS),
      },
    },
    async () => ({
      modules: Object.fromEntries(
        await Promise.all(registry.names().map(async (name) => [name, await registry.usage(name)] as const)),
      ),
    }),
  );
}
