/**
 * Prometheus metrics of the pod-manager (prom-client), served at `GET /metrics`. Gauges that
 * describe state (in flight, queue, replicas) are read from the registry when scraped.
 */
import client from 'prom-client';
import type { ModuleRegistry } from '../orchestration/registry.js';

/** The pod-manager's metrics; `text()` renders them. */
export interface Metrics {
  readonly contentType: string;
  text(): Promise<string>;
}

/** Latency buckets in seconds: sub-millisecond forwards up to long module calls. */
const callBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const startBuckets = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Creates the metrics of one registry (a prom-client Registry of its own, so apps do not collide). */
export function createMetrics(registry: ModuleRegistry): Metrics {
  const register = new client.Registry();
  const invocations = new client.Counter({
    name: 'splice_invocations_total',
    help: 'Invocations forwarded, by module and outcome: ok, remote_error (the module threw), error (the call failed).',
    labelNames: ['module', 'outcome'],
    registers: [register],
  });
  const latency = new client.Histogram({
    name: 'splice_invocation_duration_seconds',
    help: 'Time from request to answer of an invocation, cold start included.',
    labelNames: ['module'],
    buckets: callBuckets,
    registers: [register],
  });
  const coldStarts = new client.Histogram({
    name: 'splice_cold_start_duration_seconds',
    help: 'Cold starts that calls waited for (the _count is the number of cold starts).',
    labelNames: ['module'],
    buckets: startBuckets,
    registers: [register],
  });
  new client.Gauge({
    name: 'splice_invocations_in_flight',
    help: 'Invocations being forwarded now.',
    labelNames: ['module'],
    registers: [register],
    collect() {
      for (const name of registry.names()) this.set({ module: name }, sum(registry.inFlight(name).values()));
    },
  });
  new client.Gauge({
    name: 'splice_cold_start_queue_depth',
    help: 'Calls waiting for their module to start.',
    labelNames: ['module'],
    registers: [register],
    collect() {
      for (const view of registry.list()) this.set({ module: view.name }, view.queued);
    },
  });
  new client.Gauge({
    name: 'splice_replicas',
    help: 'Module-server replicas by state.',
    labelNames: ['module', 'state'],
    registers: [register],
    collect() {
      this.reset();
      for (const view of registry.list()) {
        for (const r of view.replicas) this.inc({ module: view.name, state: r.state });
      }
    },
  });
  // Per call: the labelled children are looked up once per module (prom-client hashes the labels
  // of every inc/observe given as an object, which showed in the forwarding hop's profile).
  const children = new Map<
    string,
    {
      latency: ReturnType<typeof latency.labels>;
      outcomes: Map<string, ReturnType<typeof invocations.labels>>;
    }
  >();
  registry.onCall(({ module, ms, outcome }) => {
    let c = children.get(module);
    if (!c) {
      c = { latency: latency.labels({ module }), outcomes: new Map() };
      children.set(module, c);
    }
    let counter = c.outcomes.get(outcome);
    if (!counter) {
      counter = invocations.labels({ module, outcome });
      c.outcomes.set(outcome, counter);
    }
    counter.inc();
    c.latency.observe(ms / 1000);
  });
  registry.onColdStart((module, ms) => coldStarts.observe({ module }, ms / 1000));
  client.collectDefaultMetrics({ register, prefix: 'splice_pod_manager_' });
  return { contentType: register.contentType, text: () => register.metrics() };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
