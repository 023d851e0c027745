/**
 * Batch jobs: submit (JSON, msgpack, or NDJSON lines: the spec, then one input per line), list,
 * inspect, read results (NDJSON or msgpack frames, in pages from an offset) and cancel.
 */
import { Readable } from 'node:stream';
import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { checkDepth, decode, encode, frameMessage, Rest } from '@splice-orc/protocol';
import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../../errors.js';
import type { JobRecord, JobStore } from '../../jobs/job-store.js';
import type { JobScheduler } from '../../jobs/scheduler.js';
import { errorJson, jsonFromValue } from '../json-invoke.js';
import { ALWAYS, CONTROL, CONTROL_ROUTE, responses, WITH_BODY } from '../responses.js';

/** What the job routes need. */
export interface JobRouteOptions {
  scheduler: JobScheduler;
  store: JobStore;
  maxBodyBytes: number;
}

/** Split entries in one GET /jobs/:id: a job may have 100,000 splits, and polls need none. */
const DEFAULT_SPLITS = 1000;
const MAX_SPLITS = 10_000;
const IdParams = T.Object({ id: T.String({ maxLength: 64, description: 'job id' }) });
const digits = (description: string) => T.Optional(T.String({ pattern: '^[0-9]{1,9}$', description }));
const SubmitQuery = T.Object(
  {
    when_busy: T.Optional(
      T.Union([T.Literal('queue'), T.Literal('refuse')], {
        description: 'no workers free now: queue the job (submit, default) or refuse it with 409 (run)',
      }),
    ),
  },
  { additionalProperties: false },
);
const ViewQuery = T.Object(
  {
    splits: digits(`split entries listed (default ${DEFAULT_SPLITS}, at most ${MAX_SPLITS}; 0: none)`),
    split_offset: digits('index of the first split listed (default 0)'),
  },
  { additionalProperties: false },
);
const ListQuery = T.Object(
  {
    limit: digits('most jobs listed, newest first (default 100, at most 1000)'),
    state: T.Optional(Rest.JobState),
  },
  { additionalProperties: false },
);
const ResultsQuery = T.Object(
  {
    offset: digits('first input index (input order) or position (completion order) to send'),
    limit: digits('most results sent (default and most 100000)'),
    format: T.Optional(T.Union([T.Literal('ndjson'), T.Literal('msgpack')])),
  },
  { additionalProperties: false },
);
const MAX_RESULTS_PAGE = 100_000;

const ResultsAnswer = {
  description:
    'Results from the offset, in the job\'s order, as far as they are done: NDJSON lines {"index", "position", "value"} or {"index", "position", "error"}, or (format=msgpack) frames (flag byte 0, 4-byte length, msgpack map of the same keys)',
  content: {
    [Rest.NDJSON_TYPE]: { schema: { type: 'string' } },
    [Rest.MSGPACK_TYPE]: { schema: { type: 'string', format: 'binary' } },
  },
};

export function jobRoutes(app: FastifyInstance, o: JobRouteOptions): void {
  const { scheduler, store } = o;
  app.addContentTypeParser(Rest.NDJSON_TYPE, { parseAs: 'string' }, (_request, body, done) =>
    done(null, body),
  );

  app.post<{ Querystring: Static<typeof SubmitQuery> }>(
    '/jobs',
    {
      bodyLimit: o.maxBodyBytes,
      schema: {
        tags: ['jobs'],
        summary: 'Submit a job: map a module function over inputs, split across replicas',
        querystring: SubmitQuery,
        body: {
          content: {
            'application/json': { schema: Rest.JobSpec },
            [Rest.MSGPACK_TYPE]: {
              schema: { description: 'the spec as a msgpack map (inputs keep exact types)' },
            },
            [Rest.NDJSON_TYPE]: {
              schema: {
                type: 'string',
                description: 'the spec (without inputs) on the first line, then one input per line',
              },
            },
          },
        },
        response: responses(Rest.JobView, [...ALWAYS, ...WITH_BODY, 404, 409, ...CONTROL]),
      },
      config: CONTROL_ROUTE,
      // The spec is checked below, so that every problem names its field with JOB_SPEC_INVALID.
      attachValidation: true,
    },
    async (request) => {
      const { spec, inputs } = specFrom(request.body, request.headers['content-type']);
      const job = scheduler.submit(spec, inputs, request.query.when_busy !== 'refuse');
      return viewOf(store, scheduler.get(job.id));
    },
  );

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Jobs, newest first: queued, running and finished ones',
        querystring: ListQuery,
        response: responses(Rest.JobList, [...ALWAYS, 400]),
      },
    },
    async (request) => {
      const limit = Math.min(1000, Number(request.query.limit ?? 100));
      // The state filters in the query, before the limit: `?state=succeeded&limit=1` finds the
      // newest succeeded job even when newer jobs are running.
      const jobs = store.list(limit, request.query.state);
      return { jobs: jobs.map((j) => viewOf(store, j)) };
    },
  );

  app.get<{ Params: { id: string }; Querystring: Static<typeof ViewQuery> }>(
    '/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'One job: state, counts, ETA and per-split stats (a page of its splits)',
        params: IdParams,
        querystring: ViewQuery,
        response: responses(Rest.JobView, [...ALWAYS, 400, 404, 414]),
      },
    },
    async (request) => {
      const limit = Math.min(MAX_SPLITS, Number(request.query.splits ?? DEFAULT_SPLITS));
      const page = limit > 0 ? { offset: Number(request.query.split_offset ?? 0), limit } : undefined;
      return viewOf(store, scheduler.get(request.params.id), page);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Cancel a queued or running job (a finished one is left as it is)',
        params: IdParams,
        response: responses(Rest.JobView, [...ALWAYS, 400, 404, 414, ...CONTROL]),
      },
      config: CONTROL_ROUTE,
    },
    async (request) => viewOf(store, scheduler.cancel(request.params.id)),
  );

  app.get<{ Params: { id: string }; Querystring: Static<typeof ResultsQuery> }>(
    '/jobs/:id/results',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Results from an offset, streamed (resume from the last position + 1)',
        params: IdParams,
        querystring: ResultsQuery,
        response: responses(ResultsAnswer, [...ALWAYS, 400, 404, 414]),
      },
    },
    async (request, reply) => {
      const job = scheduler.get(request.params.id);
      const offset = Number(request.query.offset ?? 0);
      const limit = Math.min(MAX_RESULTS_PAGE, Number(request.query.limit ?? MAX_RESULTS_PAGE));
      const order = job.spec.order ?? 'input';
      // `position` is what the offset counts in the job's order: resume from the last one + 1.
      const rows = store
        .results(job.id, order, offset, limit)
        .map((r) => (order === 'input' ? { ...r, position: r.index } : r));
      const msgpack = request.query.format === 'msgpack';
      function* body(): Generator<Buffer | string> {
        for (const r of rows) {
          if (msgpack) {
            const record = {
              index: r.index,
              position: r.position,
              [r.failed ? 'error' : 'value']: decode(r.value),
            };
            yield frameMessage(encode(record));
          } else {
            const value = decode(r.value);
            const json = r.failed ? { error: errorJson(asError(value)) } : { value: jsonFromValue(value) };
            yield `${JSON.stringify({ index: r.index, position: r.position, ...json })}\n`;
          }
        }
      }
      return reply.type(msgpack ? Rest.MSGPACK_TYPE : Rest.NDJSON_TYPE).send(Readable.from(body()));
    },
  );
}

/** The spec and inputs of a POST /jobs body, or JOB_SPEC_INVALID naming the field. */
function specFrom(body: unknown, contentType: string | undefined): { spec: Rest.JobSpec; inputs: unknown[] } {
  let value = body;
  let lines: unknown[] | undefined;
  if (Buffer.isBuffer(body)) {
    try {
      value = decode(body);
    } catch (error) {
      throw new ServiceError(
        'JOB_SPEC_INVALID',
        `the msgpack body cannot be read: ${(error as Error).message}`,
      );
    }
  } else if (typeof body === 'string' && contentType?.startsWith(Rest.NDJSON_TYPE)) {
    ({ value, lines } = ndjson(body));
  }
  if (!Value.Check(Rest.JobSpec, value)) {
    const problems = [...Value.Errors(Rest.JobSpec, value)]
      .slice(0, 10)
      .map((e) => `${e.path || '/'}: ${e.message}`);
    throw new ServiceError('JOB_SPEC_INVALID', `invalid job spec: ${problems.join('; ')}`, {
      extra: { problems },
    });
  }
  if (lines && value.inputs) {
    throw new ServiceError('JOB_SPEC_INVALID', 'inputs: give them inline or as NDJSON lines, not both');
  }
  const inputs = lines ?? value.inputs;
  if (!inputs)
    throw new ServiceError('JOB_SPEC_INVALID', 'inputs: missing (an array, or NDJSON lines after the spec)');
  if (inputs.length > Rest.MAX_JOB_INPUTS) {
    throw new ServiceError(
      'JOB_SPEC_INVALID',
      `inputs: ${inputs.length} is more than ${Rest.MAX_JOB_INPUTS}`,
    );
  }
  return { spec: value, inputs };
}

/** NDJSON: the spec on the first line, one input per following line (blank lines skipped). */
function ndjson(text: string): { value: unknown; lines: unknown[] } {
  const all = text.split('\n');
  const lines: unknown[] = [];
  let value: unknown;
  for (const [i, line] of all.entries()) {
    if (line.trim() === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
      checkDepth(parsed);
    } catch (error) {
      throw new ServiceError('JOB_SPEC_INVALID', `NDJSON line ${i + 1}: ${(error as Error).message}`);
    }
    if (value === undefined) value = parsed;
    else lines.push(parsed);
    if (lines.length > Rest.MAX_JOB_INPUTS) {
      throw new ServiceError('JOB_SPEC_INVALID', `inputs: more than ${Rest.MAX_JOB_INPUTS} NDJSON lines`);
    }
  }
  return { value: value ?? {}, lines };
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** A job's REST view; `splits` adds the per-split stats. */
/** A job's view; with `splits`, that page of its splits too. */
export function viewOf(
  store: JobStore,
  job: JobRecord,
  splits?: { offset: number; limit: number },
): Rest.JobView {
  const now = Date.now();
  const finished = job.done + job.failed;
  const seconds = job.startedAt ? ((job.finishedAt ?? now) - job.startedAt) / 1000 : 0;
  const rate = seconds > 0 ? finished / seconds : 0;
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  const view: Rest.JobView = {
    id: job.id,
    module: job.spec.module,
    fn: job.spec.fn,
    state: job.state,
    total: job.total,
    done: job.done,
    failed: job.failed,
    splits_total: job.splitsTotal,
    splits_done: job.splitsDone,
    workers: job.workers,
    retries: job.retries,
    speculative: job.speculative,
    created_at: iso(job.createdAt) as string,
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    rate: Math.round(rate * 100) / 100,
    eta_s:
      job.state === 'running' && rate > 0 ? Math.round(((job.total - finished) / rate) * 10) / 10 : undefined,
    error: job.error,
  };
  if (splits) {
    view.splits = store.splits(job.id, splits).map((s) => ({
      index: s.index,
      first: s.first,
      count: s.count,
      state: s.state,
      attempts: s.attempts,
      copies: s.copies,
      replica: s.replica || undefined,
      created_at: s.createdAt,
      assigned_at: s.assignedAt,
      started_at: s.startedAt,
      finished_at: s.finishedAt,
    }));
  }
  return view;
}
