/**
 * Prometheus metrics of the pod-manager (prom-client), served at `GET /metrics`. Gauges that
 * describe state (in flight, queue, replicas) are read from the registry when scraped.
 */
import type { EventEmitter } from 'node:events';
import client from 'prom-client';
import type { JobRunEvents } from '../jobs/job-run.js';
import type { JobStore } from '../jobs/job-store.js';
import type { ModuleRegistry } from '../orchestration/registry.js';
import type { PlacementEvent } from '../placement/engine.js';

/** The pod-manager's metrics; `text()` renders them. */
export interface Metrics {
  readonly contentType: string;
  text(): Promise<string>;
}

/** Latency buckets in seconds: sub-millisecond forwards up to long module calls. */
const callBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const startBuckets = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Batch jobs' metrics, fed by their runs; registered by {@link createMetrics}. */
export interface JobMetrics extends JobRunEvents {
  readonly collectors: client.Metric[];
}

/** Split latency buckets in seconds: a trivial split up to a long inference. */
const splitBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The job metrics: splits by event, items done, split latency. */
export function createJobMetrics(): JobMetrics {
  const splits = new client.Counter({
    name: 'splice_job_splits_total',
    help: 'Split attempts of batch jobs by event: started, finished, retried, speculated (a copy started).',
    labelNames: ['module', 'event'],
    registers: [],
  });
  const items = new client.Counter({
    name: 'splice_job_items_total',
    help: 'Inputs of batch jobs done (rate() of it is items/s).',
    labelNames: ['module'],
    registers: [],
  });
  const latency = new client.Histogram({
    name: 'splice_job_split_duration_seconds',
    help: 'Time of a finished split attempt, from send to stored results.',
    labelNames: ['module'],
    buckets: splitBuckets,
    registers: [],
  });
  return {
    collectors: [splits, items, latency],
    split: (event, module) => splits.inc({ module, event }),
    splitDone: (module, seconds, n) => {
      items.inc({ module }, n);
      latency.observe({ module }, seconds);
    },
  };
}

/**
 * Creates the metrics of one registry (a prom-client Registry of its own, so apps do not collide);
 * `events` is the app's emitter, whose 'placement' events count placement changes, and `jobs` the
 * batch jobs' store and events.
 */
export function createMetrics(
  registry: ModuleRegistry,
  events: EventEmitter,
  jobs?: { jobs: JobStore; events: JobMetrics },
): Metrics {
  const register = new client.Registry();
  if (jobs) {
    for (const collector of jobs.events.collectors) register.registerMetric(collector);
    new client.Gauge({
      name: 'splice_jobs',
      help: 'Batch jobs by state (kept ones: finished jobs past jobs.keep_finished are deleted).',
      labelNames: ['state'],
      registers: [register],
      collect() {
        const counts = jobs.jobs.counts();
        for (const state of ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const) {
          this.set({ state }, counts[state] ?? 0);
        }
      },
    });
  }
  const invocations = new client.Counter({
    name: 'splice_invocations_total',
    help: 'Invocations forwarded, by module, outcome (ok, remote_error: the module threw, error: the call failed) and code (OK, REMOTE_ERROR, or the error code).',
    labelNames: ['module', 'outcome', 'code'],
    registers: [register],
  });
  const startFailures = new client.Counter({
    name: 'splice_module_start_failures_total',
    help: 'Starts of a module that failed (cold starts calls waited for, keep-warm starts), by error code.',
    labelNames: ['module', 'code'],
    registers: [register],
  });
  const placementChanges = new client.Counter({
    name: 'splice_placement_changes_total',
    help: "Changes of a module's placement, by the placement it moved to (local or remote).",
    labelNames: ['module', 'placement'],
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
  registry.onCall(({ module, ms, outcome, code }) => {
    let c = children.get(module);
    if (!c) {
      c = { latency: latency.labels({ module }), outcomes: new Map() };
      children.set(module, c);
    }
    let counter = c.outcomes.get(code);
    if (!counter) {
      counter = invocations.labels({ module, outcome, code });
      c.outcomes.set(code, counter);
    }
    counter.inc();
    c.latency.observe(ms / 1000);
  });
  registry.onColdStart((module, ms) => coldStarts.observe({ module }, ms / 1000));
  registry.onStartFailure((module, code) => startFailures.inc({ module, code }));
  events.on('placement', (event: PlacementEvent) => {
    if (
      event.module !== undefined &&
      event.from !== undefined &&
      event.to !== undefined &&
      event.from !== event.to
    )
      placementChanges.inc({ module: event.module, placement: event.to });
  });
  client.collectDefaultMetrics({ register, prefix: 'splice_pod_manager_' });
  // prom-client names three of its default gauges `*_total`, which Prometheus keeps for counters
  // (promtool flags them). Each is the sum of the per-type gauge beside it
  // (`…nodejs_active_handles{type}`), so nothing is lost: sum() that instead.
  for (const what of ['handles', 'requests', 'resources']) {
    register.removeSingleMetric(`splice_pod_manager_nodejs_active_${what}_total`);
  }
  return { contentType: register.contentType, text: () => register.metrics() };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
