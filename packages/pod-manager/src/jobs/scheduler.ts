/**
 * The jobs of a pod-manager: admits them within the limits (running jobs, workers over all jobs
 * with speculative extras, queued jobs), queues the rest, gives each running job its replicas
 * (held against the lifecycle loop, added through the registry and removed after), runs it, and
 * picks up what a stopped pod-manager left: running jobs resume, their finished splits kept.
 */
import { randomUUID } from 'node:crypto';
import { encode, type Rest } from '@splice-orc/protocol';
import type { FastifyBaseLogger } from 'fastify';
import { ServiceError } from '../errors.js';
import type { ModuleRegistry } from '../orchestration/registry.js';
import { badField, type JobPlan, planJob } from './job-plan.js';
import { JobRun, type JobRunEvents } from './job-run.js';
import type { JobRecord, JobStore } from './job-store.js';

/** Options of {@link JobScheduler}. */
export interface JobSchedulerOptions {
  store: JobStore;
  registry: ModuleRegistry;
  limits: { maxRunning: number; maxWorkers: number; maxQueued: number; keepFinished: number };
  defaultTimeoutMs: number;
  log: FastifyBaseLogger;
  events: JobRunEvents;
}

/** Runs and queues the pod-manager's jobs. */
export class JobScheduler {
  readonly #o: JobSchedulerOptions;
  readonly #runs = new Map<string, JobRun>();
  /** Workers reserved by running jobs. */
  #reserved = 0;
  #closed = false;

  constructor(options: JobSchedulerOptions) {
    this.#o = options;
  }

  /** Picks up the jobs a stopped pod-manager left (running ones first, in order). */
  resume(): void {
    for (const job of this.#o.store.unfinished()) {
      this.#o.store.requeueRunning(job.id);
      if (job.state === 'running') this.#o.store.setState(job.id, 'queued');
    }
    this.#pump();
  }

  /**
   * Validates, plans and stores a job. `queue`: wait for workers when there are none now; else
   * refuse with JOB_WORKERS_UNAVAILABLE (and store nothing).
   */
  submit(spec: Rest.JobSpec, inputs: unknown[], queue: boolean): JobRecord {
    if (!this.#o.registry.names().includes(spec.module)) {
      throw badField(
        'module',
        `'${spec.module}' is not configured (configured: ${this.#o.registry.names().join(', ') || 'none'})`,
      );
    }
    if (inputs.length === 0)
      throw new ServiceError('JOB_SPEC_INVALID', 'inputs: a job needs at least one input');
    const plan = planJob(spec, inputs.length, { maxWorkers: this.#o.limits.maxWorkers });
    const queued = this.#o.store.unfinished().filter((j) => j.state === 'queued').length;
    if (!this.#fits(plan.reserved) || queued > 0) {
      if (!queue) {
        throw new ServiceError(
          'JOB_WORKERS_UNAVAILABLE',
          `the job needs ${plan.reserved} workers; ${this.#o.limits.maxWorkers - this.#reserved} of jobs.max_workers (${this.#o.limits.maxWorkers}) are free, ${this.#runs.size} of jobs.max_running (${this.#o.limits.maxRunning}) jobs run, ${queued} wait`,
        );
      }
      if (queued >= this.#o.limits.maxQueued) {
        throw new ServiceError(
          'JOB_QUEUE_FULL',
          `jobs.max_queued (${this.#o.limits.maxQueued}) jobs already wait`,
        );
      }
    }
    const { inputs: _, ...stored } = spec;
    const job = this.#o.store.create({
      id: randomUUID(),
      spec: { ...stored, dynamic: plan.dynamic },
      total: inputs.length,
      workers: plan.workers,
      reserved: plan.reserved,
      splits: splitsOf(inputs, plan),
    });
    this.#o.store.prune(this.#o.limits.keepFinished);
    this.#pump();
    return job;
  }

  /** Cancels a queued or running job (a finished one stays as it is). */
  cancel(id: string): JobRecord {
    const job = this.get(id);
    const run = this.#runs.get(id);
    if (run) run.stop('cancelled');
    else if (job.state === 'queued') this.#o.store.setState(id, 'cancelled');
    this.#pump();
    return this.get(id);
  }

  /** A job, or JOB_NOT_FOUND. */
  get(id: string): JobRecord {
    const job = this.#o.store.get(id);
    if (!job)
      throw new ServiceError(
        'JOB_NOT_FOUND',
        `no job ${id} (finished jobs past jobs.keep_finished are deleted)`,
      );
    return job;
  }

  /** Running jobs now. */
  running(): number {
    return this.#runs.size;
  }

  /** Stops every run (the jobs stay running in the store, for the next pod-manager). */
  async close(): Promise<void> {
    this.#closed = true;
    const runs = [...this.#runs.values()];
    for (const run of runs) run.stop('running');
    await Promise.all(runs.map((r) => r.finished));
  }

  #fits(reserved: number): boolean {
    return (
      this.#runs.size < this.#o.limits.maxRunning && this.#reserved + reserved <= this.#o.limits.maxWorkers
    );
  }

  /** Starts queued jobs, oldest first, while they fit. */
  #pump(): void {
    if (this.#closed) return;
    for (const job of this.#o.store.unfinished()) {
      if (job.state !== 'queued') continue;
      if (!this.#fits(job.reserved)) break;
      this.#start(job);
    }
  }

  #start(job: JobRecord): void {
    const { registry, store } = this.#o;
    this.#reserved += job.reserved;
    store.setState(job.id, 'running');
    const run = new JobRun({
      store,
      registry,
      job: store.get(job.id) as JobRecord,
      dynamic: job.spec.dynamic ?? true,
      defaultTimeoutMs: this.#o.defaultTimeoutMs,
      log: this.#o.log,
      events: this.#o.events,
    });
    this.#runs.set(job.id, run);
    const module = job.spec.module;
    registry.holdReplicas(module, job.id, job.reserved);
    this.#scaleUp(module, job.reserved).then(
      () => run.start(),
      (error: unknown) => run.stop('failed', `cannot start the workers: ${(error as Error).message}`),
    );
    void run.finished.then(async (state) => {
      this.#runs.delete(job.id);
      this.#reserved -= job.reserved;
      registry.releaseReplicas(module, job.id);
      this.#o.log.info({ job: job.id, state }, 'job ended');
      this.#pump();
      if (!this.#closed) await this.#scaleDown(module).catch(() => {});
    });
  }

  /** Makes sure the module has `replicas` ready servers (at least one; as many as can start). */
  async #scaleUp(module: string, replicas: number): Promise<void> {
    const { registry } = this.#o;
    await registry.load(module);
    const spec = registry.spec(module);
    const missing = replicas - registry.status(module).replicas.filter((r) => r.state !== 'draining').length;
    if (missing <= 0) return;
    const added = await Promise.allSettled(Array.from({ length: missing }, () => registry.addReplica(spec)));
    const failed = added.find((a) => a.status === 'rejected');
    if (failed)
      this.#o.log.warn(
        { module, err: (failed as PromiseRejectedResult).reason },
        'a job worker did not start; the job runs on fewer',
      );
  }

  /**
   * Removes the replicas no job holds any more, down to what the module keeps by itself
   * (min_replicas, at least one): idle ones holding no references, newest first.
   */
  async #scaleDown(module: string): Promise<void> {
    const { registry } = this.#o;
    const keep = Math.max(registry.spec(module).minReplicas, 1, registry.heldReplicas(module));
    const stats = await registry.replicaStats(module);
    const idle = stats.filter((s) => s.objects === 0 && !registry.inFlight(module).get(s.server_id));
    let extra = registry.ready(module).length - keep;
    for (const s of idle.reverse()) {
      if (extra <= 0 || registry.heldReplicas(module) > 0) break;
      await registry.removeReplica(module, s.server_id);
      extra--;
    }
  }
}

/** The splits' inputs, each a msgpack-encoded list. */
function splitsOf(
  inputs: unknown[],
  plan: JobPlan,
): Array<{ first: number; count: number; inputs: Uint8Array }> {
  let first = 0;
  return plan.sizes.map((count) => {
    const split = { first, count, inputs: encode(inputs.slice(first, first + count)) };
    first += count;
    return split;
  });
}
