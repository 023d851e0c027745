/**
 * One running job: its workers pull splits (or take those dealt to them, static) and send each to
 * their replica through the registry's forwarding, store every answer per split as it comes, retry
 * a failed or lost split (on another replica when there is one), and copy stragglers
 * (speculation): the first answer wins, the other copy is cancelled.
 */
import {
  Code,
  decode,
  encode,
  encodeBatchRequest,
  type InvokeResponse,
  PROGRAM_VERSION,
  RemoteRef,
  type Rest,
  readBatchAnswer,
  SpliceError,
} from '@splice-orc/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { ModuleRegistry } from '../orchestration/registry.js';
import type { JobRecord, JobStore } from './job-store.js';

/** What a run reports to metrics. */
export interface JobRunEvents {
  split(event: 'started' | 'finished' | 'retried' | 'speculated', module: string): void;
  splitDone(module: string, seconds: number, items: number): void;
}

/** Options of {@link JobRun}. */
export interface JobRunOptions {
  store: JobStore;
  registry: ModuleRegistry;
  job: JobRecord;
  /** Split i of a static job belongs to worker i mod workers. */
  dynamic: boolean;
  defaultTimeoutMs: number;
  log: FastifyBaseLogger;
  events: JobRunEvents;
  /** Randomness of fault injection (tests may fix it). */
  random?: () => number;
}

/** A split waiting for a worker; `avoid`: the replica it failed on, or the one its original runs on. */
interface Ticket {
  index: number;
  avoid: string | undefined;
  copy: boolean;
}

interface Running {
  controllers: Set<AbortController>;
  startedAt: number;
  replica: string;
  copied: boolean;
}

/** Thrown by fault injection: counts as a failed attempt. */
class InjectedFailure extends Error {
  override name = 'InjectedFailure';
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/** A job being run; `finished` settles with its final state. */
export class JobRun {
  readonly #o: JobRunOptions;
  readonly #spec: JobRecord['spec'];
  readonly #path: string[];
  readonly #session: string;
  readonly #shared: Ticket[] = [];
  readonly #dealt: Ticket[][] = [];
  readonly #copies: Ticket[] = [];
  readonly #running = new Map<number, Running>();
  readonly #failures = new Map<number, number>();
  readonly #durations: number[] = [];
  #left: number;
  #ended = false;
  #wake: () => void = () => {};
  #wakeup: Promise<void> = Promise.resolve();
  readonly #random: () => number;
  #end!: (state: Rest.JobState) => void;
  /** Settles with the job's final state once it has one. */
  readonly finished: Promise<Rest.JobState>;

  constructor(options: JobRunOptions) {
    this.#o = options;
    this.#spec = options.job.spec;
    this.#path = this.#spec.fn.split('.');
    this.#session = `job-${options.job.id}`;
    this.#random = options.random ?? Math.random;
    this.finished = new Promise((resolve) => {
      this.#end = resolve;
    });
    const splits = options.store.splits(options.job.id);
    this.#left = splits.filter((s) => s.state !== 'done').length;
    const workers = options.job.workers;
    for (let w = 0; w < workers; w++) this.#dealt.push([]);
    for (const s of splits) {
      if (s.state === 'done') continue;
      const ticket = { index: s.index, avoid: undefined, copy: false };
      if (options.dynamic) this.#shared.push(ticket);
      else this.#dealt[s.index % workers]?.push(ticket);
    }
    this.#rearm();
  }

  /** Starts the workers (and the speculator); call once the job's replicas are up. */
  start(): void {
    if (this.#left === 0) {
      this.#finish('succeeded');
      return;
    }
    const workers = this.#o.job.workers;
    for (let w = 0; w < workers; w++) void this.#worker(w, false);
    const speculation = this.#spec.speculation;
    if (speculation) {
      if (speculation.extra_worker) void this.#worker(workers, true);
      const timer = setInterval(() => this.#speculate(), speculation.interval_ms ?? 200);
      timer.unref();
      void this.finished.then(() => clearInterval(timer));
    }
  }

  /** Stops the job (cancel, or the pod-manager closing): attempts in flight are aborted. */
  stop(state: Rest.JobState, error?: string): void {
    if (this.#ended) return;
    this.#finish(state, error);
  }

  #finish(state: Rest.JobState, error?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const running of this.#running.values()) {
      for (const c of running.controllers) c.abort(new Error(`job ${state}`));
    }
    this.#wake();
    // A job stopped by the pod-manager closing stays running in the store, to be resumed.
    if (state !== 'running') this.#o.store.setState(this.#o.job.id, state, error);
    this.#end(state);
  }

  #rearm(): void {
    this.#wakeup = new Promise((resolve) => {
      this.#wake = () => {
        resolve();
        this.#rearm();
      };
    });
  }

  /** A worker: takes the next split for its replica and sends it, until the job ends. */
  async #worker(worker: number, copiesOnly: boolean): Promise<void> {
    while (!this.#ended) {
      const replica = this.#replicaOf(worker);
      const ticket = this.#take(worker, replica, copiesOnly);
      if (!ticket) {
        await this.#wakeup;
        continue;
      }
      await this.#attempt(ticket, replica ?? this.#otherReplica(ticket.avoid));
    }
  }

  /** The replica a worker uses: its own among the ready ones (stable order). */
  #replicaOf(worker: number): string | undefined {
    const ready = this.#o.registry
      .ready(this.#spec.module)
      .map((r) => r.id)
      .sort();
    return ready.length === 0 ? undefined : ready[worker % ready.length];
  }

  /** A ready replica other than `avoid` when there is one. */
  #otherReplica(avoid: string | undefined): string | undefined {
    const ready = this.#o.registry.ready(this.#spec.module).map((r) => r.id);
    return ready.find((id) => id !== avoid) ?? ready[0];
  }

  #take(worker: number, replica: string | undefined, copiesOnly: boolean): Ticket | undefined {
    // Copies first (they are what the job waits for), and only where the original does not run.
    const copy = this.#copies.findIndex((t) => t.avoid !== replica || this.#readyCount() < 2);
    if (copy >= 0) return this.#copies.splice(copy, 1)[0];
    if (copiesOnly) return undefined;
    return this.#dealt[worker]?.shift() ?? this.#shared.shift();
  }

  #readyCount(): number {
    return this.#o.registry.ready(this.#spec.module).length;
  }

  /** One attempt of a split on a replica (a retry avoids the replica it failed on). */
  async #attempt(ticket: Ticket, preferred: string | undefined): Promise<void> {
    const { index } = ticket;
    // A copy whose split is already done, or a split done by its copy meanwhile: nothing to do.
    if (!this.#running.has(index) && ticket.copy) return;
    const replica = ticket.avoid === preferred ? this.#otherReplica(ticket.avoid) : preferred;
    const controller = new AbortController();
    let running = this.#running.get(index);
    if (!running) {
      running = { controllers: new Set(), startedAt: Date.now(), replica: replica ?? '', copied: false };
      this.#running.set(index, running);
    }
    running.controllers.add(controller);
    const started = performance.now();
    try {
      this.#o.store.splitStarted(this.#o.job.id, index, replica ?? '', ticket.copy);
      this.#o.events.split(ticket.copy ? 'speculated' : 'started', this.#spec.module);
      const results = await this.#send(index, replica, controller.signal);
      if (this.#ended) return;
      if (this.#o.store.finishSplit(this.#o.job.id, index, results)) {
        this.#o.events.split('finished', this.#spec.module);
        this.#o.events.splitDone(this.#spec.module, (performance.now() - started) / 1000, results.length);
        this.#durations.push(performance.now() - started);
        this.#splitDone(index);
      }
    } catch (error) {
      running.controllers.delete(controller);
      if (this.#ended || controller.signal.aborted) return;
      this.#failed(ticket, replica, error);
    } finally {
      running.controllers.delete(controller);
    }
  }

  #splitDone(index: number): void {
    const running = this.#running.get(index);
    this.#running.delete(index);
    // The first answer wins: the other copy is cancelled.
    for (const c of running?.controllers ?? []) c.abort(new Error('another copy finished first'));
    this.#left--;
    if (this.#left === 0) this.#finish('succeeded');
    else this.#wake();
  }

  #failed(ticket: Ticket, replica: string | undefined, error: unknown): void {
    const { index } = ticket;
    const running = this.#running.get(index);
    // Another copy still runs: it may yet answer.
    if (running && running.controllers.size > 0) return;
    const failures = (this.#failures.get(index) ?? 0) + 1;
    this.#failures.set(index, failures);
    const message = error instanceof Error ? error.message : String(error);
    this.#o.log.warn({ job: this.#o.job.id, split: index, replica, failures, err: message }, 'split failed');
    if (failures <= (this.#spec.max_retries ?? 2)) {
      this.#running.delete(index);
      this.#o.store.splitRetried(this.#o.job.id, index);
      this.#o.events.split('retried', this.#spec.module);
      this.#shared.unshift({ index, avoid: replica, copy: false });
      this.#wake();
      return;
    }
    if (this.#spec.return_errors) {
      const [split] = this.#o.store.splits(this.#o.job.id, { offset: index, limit: 1 });
      const value = encode(asError(error));
      const results = Array.from({ length: split?.count ?? 0 }, () => ({ value, failed: true }));
      if (this.#o.store.finishSplit(this.#o.job.id, index, results)) this.#splitDone(index);
      return;
    }
    this.#finish('failed', `split ${index} failed ${failures} times; last: ${message}`);
  }

  /** Sends a split and returns one encoded result per input. */
  async #send(
    index: number,
    replica: string | undefined,
    signal: AbortSignal,
  ): Promise<Array<{ value: Uint8Array; failed: boolean }>> {
    const inject = this.#spec.inject;
    if (inject?.delay_rate && this.#random() < inject.delay_rate) {
      await sleep(Math.round(this.#random() * (inject.delay_max_ms ?? 1000)), signal);
    }
    if (inject?.error_rate && this.#random() < inject.error_rate) {
      throw new InjectedFailure(`injected failure (inject.error_rate ${inject.error_rate})`);
    }
    const inputs = decode(this.#o.store.splitInputs(this.#o.job.id, index)) as unknown[];
    const timeoutMs = this.#spec.timeout_ms ?? this.#o.defaultTimeoutMs;
    const options = { timeoutMs, signal, prefer: replica };
    const program = (args: unknown[]) =>
      encode({
        v: PROGRAM_VERSION,
        session: this.#session,
        ops: [{ op: 'call', target: null, path: this.#path, args }],
      });
    if (this.#spec.batch) {
      const { payload } = await this.#o.registry.forward(this.#spec.module, program([inputs]), options);
      const response = decode(payload) as InvokeResponse;
      if (!response.ok) return this.#thrown(response.error, inputs.length);
      if (!Array.isArray(response.value) || response.value.length !== inputs.length) {
        throw new SpliceError(
          Code.FAILED_PRECONDITION,
          `${this.#spec.fn} (batch: true) must return a list as long as its input (${inputs.length}), got ${Array.isArray(response.value) ? `a list of ${response.value.length}` : typeof response.value}`,
        );
      }
      return response.value.map((v) => result(v));
    }
    const request = encodeBatchRequest({
      payloads: inputs.map((x) => program([x])),
      timeouts_ms: inputs.map(() => timeoutMs),
    });
    const answers: Buffer[] = [];
    await this.#o.registry.forwardBatch(this.#spec.module, request, inputs.length, options, (answer) => {
      answers[answer.index] = answer.message;
    });
    return inputs.map((_, i) => {
      const answer = answers[i];
      if (!answer) throw new SpliceError(Code.UNAVAILABLE, `input ${i} of split ${index} got no answer`);
      const message = readBatchAnswer(answer);
      if (message.status !== 0) throw new SpliceError(Code.UNAVAILABLE, message.message);
      const response = decode(message.payload) as InvokeResponse;
      return response.ok
        ? result(response.value)
        : (this.#thrown(response.error, 1)[0] as { value: Uint8Array; failed: boolean });
    });
  }

  /** The function threw: its error per input (return_errors), else a failed attempt. */
  #thrown(error: Error, count: number): Array<{ value: Uint8Array; failed: boolean }> {
    if (!this.#spec.return_errors) throw error;
    const value = encode(error);
    return Array.from({ length: count }, () => ({ value, failed: true }));
  }

  /** Copies running splits whose attempt has lasted `multiplier` × the median split time. */
  #speculate(): void {
    const s = this.#spec.speculation;
    if (!s || this.#ended || this.#durations.length === 0) return;
    const done = this.#o.job.splitsTotal - this.#left;
    if (done / this.#o.job.splitsTotal < (s.quantile ?? 0.5)) return;
    const sorted = [...this.#durations].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const now = Date.now();
    for (const [index, running] of this.#running) {
      if (running.copied || now - running.startedAt <= (s.multiplier ?? 3) * median) continue;
      running.copied = true;
      this.#copies.push({ index, avoid: running.replica, copy: true });
      this.#wake();
    }
  }
}

/** One input's value as stored; a value that stays remote (a reference) cannot be a job's result. */
function result(value: unknown): { value: Uint8Array; failed: boolean } {
  if (value instanceof RemoteRef) {
    const error = new TypeError(
      `the function returned a ${value.kind} that stays remote (a reference); a job's results must be values`,
    );
    return { value: encode(error), failed: true };
  }
  return { value: encode(value), failed: false };
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
