/**
 * Batch jobs from the client: `orc.jobs.submit(spec)` stores a job on the pod-manager and returns
 * a handle (`done()`, `progress`, `results()`, `cancel()`); `orc.jobs.run(spec)` runs one now (or
 * refuses with JOB_WORKERS_UNAVAILABLE) and resolves with its results in input order. Specs and
 * results travel in msgpack, so inputs and results keep their exact types.
 */
import { Code, decode, encode, FrameReader, Rest, SpliceError } from '@splice-orc/protocol';
import { RemoteError } from './errors.js';
import type { Transport } from './transport.js';

/** A job's spec: `module`, `fn`, `inputs` and the optional fields of the README's Batch jobs section. */
export type JobSpec = Rest.JobSpec & { inputs: unknown[] };

/** One result of a job: the input's index and its value (or, with return_errors, its error). */
export interface JobResult<T = unknown> {
  index: number;
  value?: T;
  error?: Error;
}

/** Options of waiting and reading. */
export interface JobWaitOptions {
  /** How often the job is polled, ms. Default 200. */
  pollMs?: number;
  signal?: AbortSignal;
}

/** A submitted job. */
export interface Job {
  readonly id: string;
  /**
   * The latest state seen (refreshed by `refresh()`, `done()` and `results()`, which read counts
   * only: `splits` is filled by `orc.jobs.get(id)`, or GET /jobs/:id).
   */
  readonly progress: Rest.JobView;
  refresh(): Promise<Rest.JobView>;
  /** Resolves with the final view once the job has ended (succeeded, failed or cancelled). */
  done(options?: JobWaitOptions): Promise<Rest.JobView>;
  /** Every result once, in the job's order, as they are stored (from `offset`). */
  results<T = unknown>(options?: JobWaitOptions & { offset?: number }): AsyncIterable<JobResult<T>>;
  cancel(): Promise<Rest.JobView>;
}

/** `orc.jobs`. */
export interface Jobs {
  submit(spec: JobSpec): Promise<Job>;
  /** Runs a job now and resolves with its results in input order (failed job: rejects). */
  run<T = unknown>(spec: JobSpec, options?: JobWaitOptions): Promise<T[]>;
  get(id: string): Promise<Job>;
  list(): Promise<Rest.JobView[]>;
}

const ENDED = new Set<Rest.JobState>(['succeeded', 'failed', 'cancelled']);
const PAGE = 10_000;

/** The jobs API over a transport; `timeoutMs` is each request's deadline. */
export function createJobs(transport: Transport, timeoutMs: number): Jobs {
  const request = { timeoutMs };
  // Polls ask for no split entries (a job may have 100,000); `get` shows the first page of them.
  const view = async (id: string, splits = true) =>
    (await transport.json(
      'GET',
      `${Rest.Paths.job(id)}${splits ? '' : '?splits=0'}`,
      request,
    )) as Rest.JobView;
  const post = async (spec: JobSpec, whenBusy: 'queue' | 'refuse') =>
    JSON.parse(
      (
        await transport.bytes('POST', `${Rest.Paths.jobs}?when_busy=${whenBusy}`, request, {
          bytes: encode(spec),
          type: Rest.MSGPACK_TYPE,
        })
      ).toString('utf8'),
    ) as Rest.JobView;

  const handle = (first: Rest.JobView): Job => {
    let progress = first;
    const refresh = async () => {
      progress = await view(first.id, false);
      return progress;
    };
    const done = async (options: JobWaitOptions = {}) => {
      while (!ENDED.has((await refresh()).state)) await pause(options);
      return progress;
    };
    async function* results<T>(options: JobWaitOptions & { offset?: number } = {}) {
      let offset = options.offset ?? 0;
      for (;;) {
        // Whether the job had ended is read before the page, so that the last page is never missed.
        const ended = ENDED.has((await refresh()).state);
        const path = `${Rest.Paths.jobResults(first.id)}?format=msgpack&offset=${offset}&limit=${PAGE}`;
        const page = await transport.bytes('GET', path, request);
        let count = 0;
        for (const { body } of new FrameReader(256 * 1024 * 1024).push(page)) {
          const record = decode(body) as { index: number; position: number; value?: T; error?: unknown };
          offset = record.position + 1;
          count++;
          yield 'error' in record
            ? { index: record.index, error: asError(record.error, first.module) }
            : { index: record.index, value: record.value as T };
        }
        if (count === 0 && ended) return;
        if (count < PAGE) await pause(options);
      }
    }
    return {
      id: first.id,
      get progress() {
        return progress;
      },
      refresh,
      done,
      results,
      cancel: async () => {
        progress = (await transport.json('DELETE', Rest.Paths.job(first.id), request)) as Rest.JobView;
        return progress;
      },
    };
  };

  return {
    submit: async (spec) => handle(await post(spec, 'queue')),
    run: async <T>(spec: JobSpec, options?: JobWaitOptions) => {
      const job = handle(await post(spec, 'refuse'));
      const out = new Array<T>(spec.inputs.length);
      const final = await job.done(options);
      if (final.state !== 'succeeded') {
        throw new SpliceError(
          final.state === 'cancelled' ? Code.CANCELLED : Code.ABORTED,
          `job ${final.id} ${final.state}${final.error ? `: ${final.error}` : ''}`,
          { details: { reason: `JOB_${final.state.toUpperCase()}` } },
        );
      }
      for await (const r of job.results<T>(options)) out[r.index] = (r.error ?? r.value) as T;
      return out;
    },
    get: async (id) => handle(await view(id)),
    list: async () => ((await transport.json('GET', Rest.Paths.jobs, request)) as Rest.JobList).jobs,
  };
}

function pause(options: JobWaitOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) return reject(options.signal.reason);
    setTimeout(resolve, options.pollMs ?? 200);
  });
}

/** An input's error as the module threw it (a RemoteError, like a failed call). */
function asError(value: unknown, module: string): Error {
  return new RemoteError(value instanceof Error ? value : new Error(String(value)), module);
}
