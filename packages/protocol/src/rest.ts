/**
 * The HTTP contract between clients (the SDK, the CLI, curl) and the pod-manager, written once:
 * paths, the `x-splice-*` headers, and the JSON shapes of the bodies and answers as TypeBox schemas,
 * which the pod-manager serves as its OpenAPI document and the clients read as types. Every JSON
 * key is snake_case.
 */
import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import { Code } from './status.js';

/** Headers of the invoke route. */
export const Headers = {
  /** A shorter deadline for this call, ms (the pod-manager caps it at its own). */
  timeout: 'x-splice-timeout-ms',
  /**
   * The replica (module-server instance id) holding the references the call uses: the client copies
   * it from the references, so the pod-manager routes without decoding payloads.
   */
  route: 'x-splice-route',
  /** On every invoke answer: where the module's new calls should run now (`remote` | `local`). */
  placement: 'x-splice-placement',
  /** On an answer that waited for its module to start: how long, ms. */
  coldStart: 'x-splice-cold-start-ms',
  /**
   * The client does not know yet where the module's calls run (its first call): run this one only if
   * they run remotely, else answer 409 `PLACED_LOCAL` (nothing ran) with the placement header, so
   * that the placement rides on the first call instead of costing a round trip of its own.
   */
  ifRemote: 'x-splice-if-remote',
} as const;

/** Content types an invocation is sent in. */
export const MSGPACK_TYPE = 'application/msgpack';
export const MSGPACK_TYPES = [MSGPACK_TYPE, 'application/x-msgpack', 'application/vnd.msgpack'];

const name = (module: string) => encodeURIComponent(module);

/** Paths of the REST API (module names are URL-encoded: `@scope/pkg` is `%40scope%2Fpkg`). */
export const Paths = {
  modules: '/modules',
  module: (module: string) => `/modules/${name(module)}`,
  invoke: (module: string) => `/modules/${name(module)}/invoke`,
  callbacks: (module: string) => `/modules/${name(module)}/callbacks`,
  load: (module: string) => `/modules/${name(module)}/load`,
  unload: (module: string) => `/modules/${name(module)}/unload`,
  placement: (module: string) => `/modules/${name(module)}/placement`,
  config: (module: string) => `/modules/${name(module)}/config`,
  exports: (module: string) => `/modules/${name(module)}/exports`,
  policy: '/policy',
  stats: '/stats',
  benchmark: (action: 'start' | 'stop' | 'report') => `/benchmark/${action}`,
  tracking: (action?: 'start' | 'stop') => (action ? `/tracking/${action}` : '/tracking'),
  usage: '/usage',
  metrics: '/metrics',
  openapi: '/openapi.json',
  jobs: '/jobs',
  job: (id: string) => `/jobs/${encodeURIComponent(id)}`,
  jobResults: (id: string) => `/jobs/${encodeURIComponent(id)}/results`,
  healthz: '/healthz',
  readyz: '/readyz',
} as const;

/**
 * An object of any keys whose values all match `schema` (`additionalProperties`), for request
 * bodies: OpenAPI 3.0 has no `patternProperties`, and TypeBox's `Record` checks keys with
 * `^(.*)$`, which lets a key holding a newline pass unchecked. Checked by Fastify (Ajv).
 */
const dict = <S extends TSchema>(schema: S) =>
  T.Unsafe<Record<string, Static<S>>>({ type: 'object', additionalProperties: schema });

const literals = <const V extends string>(values: readonly V[]) => T.Union(values.map((v) => T.Literal(v)));
const optional = <S extends TSchema>(schema: S) => T.Optional(schema);

/**
 * A module name as config.json keys it: an npm package name or import specifier (`lodash`,
 * `@scope/pkg`, `calc/extra`); never `__proto__`, which JSON parsers here refuse as a key. ASCII
 * classes, not `\w`, which other languages' regular expressions take as Unicode.
 */
export const MODULE_NAME_PATTERN =
  '^(?!__proto__$)(@[A-Za-z0-9_.~-]+/)?[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~-]+)*$';

/** Where a module's calls run. */
export const Placement = literals(['remote', 'local']);
export type Placement = Static<typeof Placement>;

/** A module's mode: its load_type, or what `load {mode}` set. */
export const Mode = literals(['remote', 'local', 'auto']);
export type Mode = Static<typeof Mode>;

/** Life of a module's servers. */
export const ModuleState = literals(['absent', 'installing', 'starting', 'ready', 'failed', 'stopping']);
export type ModuleState = Static<typeof ModuleState>;

/** Every error answer: `{error: {code, status, message, ...}}`. */
export const ErrorBody = T.Object(
  {
    error: T.Object({
      /** A code of the README's table, or a gRPC status name a module-server reported. */
      code: T.String(),
      /** The gRPC status name (what a client's SpliceError.code carries). */
      status: literals(Object.values(Code)),
      message: T.String(),
      /** The request never reached a module: sending it again runs it at most once. */
      safe_to_resend: optional(T.Boolean()),
      /** Config problems, each with its JSON path (BAD_REQUEST of PUT /modules/:name/config). */
      problems: optional(T.Array(T.String())),
      /** What the module threw (REMOTE_ERROR of JSON invocations). */
      remote: optional(T.Record(T.String(), T.Unknown())),
    }),
  },
  { title: 'Error' },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** One server of a module. */
export const ReplicaStatus = T.Object({
  /** The module-server instance id once it runs (what references carry), else a placeholder. */
  id: T.String(),
  state: T.Union([ModuleState, T.Literal('draining')]),
  /** `host:port` of a ready server. */
  endpoint: optional(T.String()),
  /** Process id (local backend). */
  pid: optional(T.Integer()),
  /** Pod name (Kubernetes backend). */
  pod: optional(T.String()),
  /** When the server became ready (ISO 8601). */
  started_at: optional(T.String()),
  /** Why it failed, or why it is restarting. */
  reason: optional(T.String()),
  /** While it installs (local backend): the installer's (npm's, pip's) last line of output. */
  progress: optional(T.String()),
});
export type ReplicaStatus = Static<typeof ReplicaStatus>;

/** CPU and memory of one server, or why they are not known. */
export const ReplicaUsage = T.Union([
  T.Object({ id: T.String(), cpu_percent: T.Number(), memory_bytes: T.Number() }),
  T.Object({ id: T.String(), unavailable: T.String() }),
]);
export type ReplicaUsage = Static<typeof ReplicaUsage>;

/** A module as `GET /modules` shows it. */
export const ModuleView = T.Object(
  {
    name: T.String(),
    package: T.String(),
    load_type: Mode,
    /** ready when any replica is; otherwise the most advanced state of a replica. */
    state: ModuleState,
    replicas: T.Array(ReplicaStatus),
    /** How often a dead server was restarted. */
    restarts: T.Integer(),
    /** Why the module failed (state `failed`). */
    reason: optional(T.String()),
    /** Endpoint, pid and start of the first ready replica (all are in `replicas`). */
    endpoint: optional(T.String()),
    pid: optional(T.Integer()),
    started_at: optional(T.String()),
    /** Calls answered since the pod-manager started. */
    calls_served: T.Integer(),
    in_flight: T.Integer(),
    /** Calls waiting for the module to start. */
    queued: T.Integer(),
    last_call_at: optional(T.String()),
    /** What the ready servers hold now, summed. */
    server: optional(T.Object({ sessions: T.Integer(), objects: T.Integer(), in_flight: T.Integer() })),
    mode: Mode,
    placement: Placement,
    placement_reason: T.String(),
    /** `GET /modules/:name` only: CPU and memory of each server. */
    usage: optional(T.Array(ReplicaUsage)),
  },
  { title: 'Module' },
);
export type ModuleView = Static<typeof ModuleView>;

/** `GET /modules/:name/placement`: what clients ask before their first call. */
export const PlacementAnswer = T.Object({
  name: T.String(),
  mode: Mode,
  placement: Placement,
  reason: T.String(),
});
export type PlacementAnswer = Static<typeof PlacementAnswer>;

/**
 * `GET /modules/:name/exports`: the names a caller can reach on the module's root, what
 * `import { name } from` links to (the client's import hook asks once per module and process).
 */
export const ModuleExports = T.Object({
  name: T.String(),
  runtime: T.Union([T.Literal('node'), T.Literal('python')]),
  /** Sorted; `default` when an ES module has a default export. */
  exports: T.Array(T.String()),
});
export type ModuleExports = Static<typeof ModuleExports>;

/** Calls of one module, as a client counts them between reports. */
export const CallCounts = T.Object(
  {
    calls: T.Integer({ minimum: 0, maximum: 1e9 }),
    total_ms: T.Number({ minimum: 0, maximum: 1e12 }),
  },
  { additionalProperties: false },
);
export type CallCounts = Static<typeof CallCounts>;

/** `POST /stats`: what a client reports for the placement policy (figures bounded: sums stay finite). */
export const StatsReport = T.Object(
  {
    /** Memory the client gives local modules, bytes. */
    memory_budget: optional(T.Number({ minimum: 0, maximum: 1e15 })),
    /** By module name; names the pod-manager does not serve are ignored. */
    modules: dict(
      T.Object(
        {
          local: optional(CallCounts),
          remote: optional(CallCounts),
          local_unavailable: optional(T.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type StatsReport = Static<typeof StatsReport>;

/** The answer to a report: the placements, and how often to report. */
export const StatsAnswer = T.Object({ placements: T.Record(T.String(), Placement), interval_ms: T.Number() });
export type StatsAnswer = Static<typeof StatsAnswer>;

/** The placement policy (`policy` in the config, `PUT /policy`). */
export const PolicySettings = T.Object({
  name: literals(['default', 'adaptive']),
  /** How often the adaptive policy re-evaluates, s. */
  interval_s: T.Number(),
  /** Memory a client may give local modules when it reports none (Kubernetes quantity). */
  client_memory_budget: T.String(),
  /** Least time saved per call, ms, for local placement to be worth it. */
  min_gain_ms: T.Number(),
});
export type PolicySettings = Static<typeof PolicySettings>;

/** `GET /policy`: the policy and every module's placement. */
export const PolicyAnswer = T.Composite([
  PolicySettings,
  T.Object({ placements: T.Record(T.String(), Placement) }),
]);
export type PolicyAnswer = Static<typeof PolicyAnswer>;

/** Latency figures of one module, or of all. */
export const BenchmarkFigures = T.Object({
  calls: T.Integer(),
  errors: T.Integer(),
  /** Calls per second over the benchmark's duration. */
  throughput: T.Number(),
  mean_ms: T.Number(),
  p50_ms: T.Number(),
  p90_ms: T.Number(),
  p95_ms: T.Number(),
  p99_ms: T.Number(),
});
export type BenchmarkFigures = Static<typeof BenchmarkFigures>;

/** `GET /benchmark/report`. */
export const BenchmarkReport = T.Object({
  active: T.Boolean(),
  started_at: optional(T.String()),
  duration_s: T.Number(),
  overall: BenchmarkFigures,
  modules: T.Record(T.String(), BenchmarkFigures),
});
export type BenchmarkReport = Static<typeof BenchmarkReport>;

/** A placement or policy change, or a lifecycle action, as call tracking records it. */
export const TrackedEvent = T.Union([
  T.Object({
    kind: T.Literal('placement'),
    at: T.String(),
    module: optional(T.String()),
    from: optional(Placement),
    to: optional(Placement),
    policy: T.String(),
    reason: T.String(),
  }),
  T.Object({
    kind: T.Literal('lifecycle'),
    at: T.String(),
    module: T.String(),
    action: literals(['keep-warm-start', 'scale-up', 'scale-down', 'idle-stop']),
    reason: T.String(),
  }),
]);
export type TrackedEvent = Static<typeof TrackedEvent>;

/** `GET /tracking`. */
export const TrackingReport = T.Object({
  active: T.Boolean(),
  started_at: optional(T.String()),
  events: T.Array(TrackedEvent),
  /** Older events dropped to keep the latest 10 000. */
  dropped_events: T.Integer(),
  modules: T.Record(T.String(), T.Object({ calls: T.Integer(), mean_ms: T.Number() })),
});
export type TrackingReport = Static<typeof TrackingReport>;

/** `GET /usage`: CPU and memory of every module's servers. */
export const UsageAnswer = T.Object({ modules: T.Record(T.String(), T.Array(ReplicaUsage)) });
export type UsageAnswer = Static<typeof UsageAnswer>;

/** A JSON invocation: one operation on a path from the module root, for curl. */
export const JsonInvokeBody = T.Object(
  {
    /** The path: `"det"`, `"a.b.c"` or `["a", "b.c"]`. */
    path: T.Union([T.String(), T.Array(T.String())]),
    /** Arguments: when present the path is called. */
    args: optional(T.Array(T.Unknown())),
    /** `get`, `call` or `new`; default: `call` when args are given, else `get`. */
    op: optional(literals(['get', 'call', 'new'])),
  },
  { additionalProperties: false },
);
export type JsonInvokeBody = Static<typeof JsonInvokeBody>;

/** The answer of a JSON invocation: the value made JSON-safe (references described, not held). */
export const JsonInvokeAnswer = T.Object({ value: T.Unknown() });
export type JsonInvokeAnswer = Static<typeof JsonInvokeAnswer>;

/** Content type of a job sent as NDJSON lines: the spec (without `inputs`) first, then one input per line. */
export const NDJSON_TYPE = 'application/x-ndjson';

/** Most inputs of one job. */
export const MAX_JOB_INPUTS = 1_000_000;
/** Most programs one split sends when the function is called per item (one InvokeBatch). */
export const MAX_ITEM_SPLIT = 1024;

/** Split-size policies (see the README's Batch jobs section). */
export const JobPolicy = literals(['default', 'none', 'fixed_workers', 'clamped', 'size_table']);
export type JobPolicy = Static<typeof JobPolicy>;

/** A row of the `size_table` policy: jobs of at most `max_inputs` inputs get this split size and worker count. */
export const SizeTableRow = T.Object(
  {
    max_inputs: T.Integer({ minimum: 1, maximum: MAX_JOB_INPUTS }),
    split_size: T.Integer({ minimum: 1, maximum: 100_000 }),
    workers: T.Integer({ minimum: 1, maximum: 256 }),
  },
  { additionalProperties: false },
);
export type SizeTableRow = Static<typeof SizeTableRow>;

/** Speculation: copy a split whose worker is silent far longer than the median split. */
export const Speculation = T.Object(
  {
    /** A running split gets a copy after `multiplier` × the median split time. Default 3. */
    multiplier: optional(T.Number({ minimum: 1, maximum: 1000 })),
    /** Only after this share of the splits is done (0-1). Default 0.5. */
    quantile: optional(T.Number({ minimum: 0, maximum: 1 })),
    /** How often running splits are checked, ms. Default 200. */
    interval_ms: optional(T.Integer({ minimum: 10, maximum: 60_000 })),
    /** One more worker (counted against the limits) that runs only copies. Default false. */
    extra_worker: optional(T.Boolean()),
  },
  { additionalProperties: false },
);
export type Speculation = Static<typeof Speculation>;

/** Fault injection for tests: failed and delayed split attempts. */
export const JobInject = T.Object(
  {
    /** Share of split attempts that fail (and are retried). */
    error_rate: optional(T.Number({ minimum: 0, maximum: 1 })),
    /** Share of split attempts delayed by up to `delay_max_ms` before they are sent. */
    delay_rate: optional(T.Number({ minimum: 0, maximum: 1 })),
    delay_max_ms: optional(T.Integer({ minimum: 0, maximum: 600_000 })),
  },
  { additionalProperties: false },
);
export type JobInject = Static<typeof JobInject>;

/** `POST /jobs`: map a module function over inputs, split across replicas. */
export const JobSpec = T.Object(
  {
    module: T.String({ pattern: MODULE_NAME_PATTERN, maxLength: 214 }),
    /** The function: a path from the module root, `classify` or `models.classify`. */
    fn: T.String({
      minLength: 1,
      maxLength: 256,
      pattern: '^[A-Za-z_$][A-Za-z0-9_$]*(\\.[A-Za-z_$][A-Za-z0-9_$]*)*$',
    }),
    /** The inputs (or NDJSON lines after the spec line). */
    inputs: optional(T.Array(T.Unknown(), { maxItems: MAX_JOB_INPUTS })),
    /** Call the function once per split with the list of its inputs (it returns a list as long). Default false: once per input. */
    batch: optional(T.Boolean()),
    /** Inputs per split. */
    split_size: optional(T.Integer({ minimum: 1, maximum: 100_000 })),
    /** Explicit split sizes, in input order; they must add up to the number of inputs. */
    split_sizes: optional(
      T.Array(T.Integer({ minimum: 1, maximum: 100_000 }), { minItems: 1, maxItems: 100_000 }),
    ),
    /** Replicas working on the job. */
    workers: optional(T.Integer({ minimum: 1, maximum: 256 })),
    /** true (default): workers pull the next split; false: the splits are dealt out to the workers up front. */
    dynamic: optional(T.Boolean()),
    policy: optional(JobPolicy),
    /** `clamped`: bounds of the split size. */
    min_split_size: optional(T.Integer({ minimum: 1, maximum: 100_000 })),
    max_split_size: optional(T.Integer({ minimum: 1, maximum: 100_000 })),
    /** `size_table`: rows by `max_inputs`; the first row the job fits in applies (the last one past them all). */
    size_table: optional(T.Array(SizeTableRow, { minItems: 1, maxItems: 64 })),
    /** Deadline of one split attempt, ms. Default server.invoke_timeout_ms. */
    timeout_ms: optional(T.Integer({ minimum: 1, maximum: 86_400_000 })),
    /** Attempts after the first of a failed or lost split, on another replica when there is one. Default 2. */
    max_retries: optional(T.Integer({ minimum: 0, maximum: 100 })),
    speculation: optional(Speculation),
    /** Order of `GET /jobs/:id/results`: input order (default) or completion order. */
    order: optional(literals(['input', 'completion'])),
    /** A failed input gets its error as its result instead of failing the job. Default false. */
    return_errors: optional(T.Boolean()),
    inject: optional(JobInject),
  },
  { additionalProperties: false, title: 'JobSpec' },
);
export type JobSpec = Static<typeof JobSpec>;

/** States of a job. */
export const JobState = literals(['queued', 'running', 'succeeded', 'failed', 'cancelled']);
export type JobState = Static<typeof JobState>;

/** One split, as `GET /jobs/:id` shows it (times are epoch ms; the seed's job stats). */
export const SplitView = T.Object({
  index: T.Integer(),
  first: T.Integer(),
  count: T.Integer(),
  state: literals(['pending', 'running', 'done']),
  attempts: T.Integer(),
  copies: T.Integer(),
  replica: optional(T.String()),
  created_at: T.Number(),
  assigned_at: optional(T.Number()),
  started_at: optional(T.Number()),
  finished_at: optional(T.Number()),
});
export type SplitView = Static<typeof SplitView>;

/** A job: `GET /jobs` lists them (without splits), `GET /jobs/:id` shows one. */
export const JobView = T.Object(
  {
    id: T.String(),
    module: T.String(),
    fn: T.String(),
    state: JobState,
    total: T.Integer(),
    done: T.Integer(),
    failed: T.Integer(),
    splits_total: T.Integer(),
    splits_done: T.Integer(),
    workers: T.Integer(),
    retries: T.Integer(),
    speculative: T.Integer(),
    created_at: T.String(),
    started_at: optional(T.String()),
    finished_at: optional(T.String()),
    /** Inputs done per second since the job started. */
    rate: T.Number(),
    /** Seconds until done at the current rate (running jobs with a rate). */
    eta_s: optional(T.Number()),
    error: optional(T.String()),
    splits: optional(T.Array(SplitView)),
  },
  { title: 'Job' },
);
export type JobView = Static<typeof JobView>;

/** `GET /jobs`. */
export const JobList = T.Object({ jobs: T.Array(JobView) });
export type JobList = Static<typeof JobList>;

/** One result: the input's index, its position in the chosen order, its value or (return_errors) its error. */
export interface JobResult {
  index: number;
  position: number;
  value?: unknown;
  error?: unknown;
}
