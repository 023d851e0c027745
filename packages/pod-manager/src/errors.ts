/**
 * Every error the REST API answers, in one table: a stable string code, its HTTP status, the gRPC
 * status name it corresponds to (what the client's SpliceError carries), and how to fix it. The
 * README's error table is this table.
 */
import { Code, httpStatusFromCode, isCode, SpliceError } from '@splice-orc/protocol';

interface ErrorSpec {
  status: number;
  grpc: Code;
  meaning: string;
  fix: string;
  /** The call never reached a module: sending it again runs it at most once (clients retry it). */
  safeToResend?: boolean;
}

/** The service's own error codes. Invocation failures reported by a module-server keep their gRPC name. */
export const errorTable = {
  MODULE_NOT_FOUND: {
    status: 404,
    grpc: Code.NOT_FOUND,
    meaning: 'The module is not in module_config.',
    fix: 'Add it to config.json (or check the spelling) and restart the pod-manager.',
  },
  INSTALL_FAILED: {
    status: 502,
    grpc: Code.FAILED_PRECONDITION,
    meaning:
      "npm (or pip, for a Python module) could not install the module or a dependency; the message is the installer's own.",
    fix: 'Fix the package spec or dependency list; check that the registry (npm, or server.python_index_url) is reachable.',
  },
  MODULE_START_FAILED: {
    status: 502,
    grpc: Code.UNAVAILABLE,
    meaning: 'The module-server exited before it was ready (often: the module throws on import).',
    fix: "Read the message (the server's last output) and fix the module or its dependencies.",
  },
  POD_START_FAILED: {
    status: 502,
    grpc: Code.UNAVAILABLE,
    meaning:
      "A module pod cannot start; the message is the cluster's reason (ImagePullBackOff, CrashLoopBackOff, Unschedulable, a failed install).",
    fix: 'Fix what the reason names (image, node capacity, package spec); the Deployment stays, so a fixed cluster recovers by itself, or DELETE the module.',
  },
  CLUSTER_ERROR: {
    status: 502,
    grpc: Code.UNAVAILABLE,
    meaning:
      'The Kubernetes API server refused or failed a request (forbidden by RBAC, unreachable, an object of that name not managed by splice-orc).',
    fix: "Read the message: grant the verb in the pod-manager's Role, check the API server, or rename the conflicting object.",
  },
  START_TIMEOUT: {
    status: 504,
    grpc: Code.DEADLINE_EXCEEDED,
    meaning: 'The module did not become ready within server.start_timeout_ms.',
    fix: 'Raise start_timeout_ms for slow installs, or look at why the server hangs on start.',
  },
  MODULE_STOPPED: {
    status: 503,
    grpc: Code.UNAVAILABLE,
    meaning:
      'The module was stopped (unload, scale-down or config change) while the call waited for it to start.',
    fix: 'Retry: the next call starts it again.',
    safeToResend: true,
  },
  SERVER_LIMIT: {
    status: 503,
    grpc: Code.RESOURCE_EXHAUSTED,
    meaning: 'The local backend runs server.max_module_servers module-server processes already.',
    fix: 'Lower min_replicas or max_replicas, unload modules not in use, or raise max_module_servers if the machine has room.',
    safeToResend: true,
  },
  QUEUE_FULL: {
    status: 503,
    grpc: Code.UNAVAILABLE,
    meaning: 'server.queue_limit calls already wait for this module to start.',
    fix: 'Retry shortly, raise queue_limit, or keep the module warm (keep_warm, min_replicas).',
    safeToResend: true,
  },
  COLD_START_TIMEOUT: {
    status: 503,
    grpc: Code.UNAVAILABLE,
    meaning: 'The call waited server.queue_timeout_ms for its module to start.',
    fix: 'Retry; raise queue_timeout_ms for modules that start slowly, or keep them warm.',
    safeToResend: true,
  },
  PACKAGE_NOT_ALLOWED: {
    status: 403,
    grpc: Code.PERMISSION_DENIED,
    meaning:
      'A module config sent over REST installs what server.package_policy does not allow (a URL, git or file: spec outside file_roots, any change when allow_change is off), or turns on install_scripts or allow_code_generation, which only the config file may.',
    fix: 'Change the config file instead, or widen server.package_policy if REST callers should be able to.',
  },
  REPLICA_NOT_FOUND: {
    status: 404,
    grpc: Code.NOT_FOUND,
    meaning: "The replica that holds the call's references is gone (stopped, scaled down or restarted).",
    fix: 'Make the references again; hold them only while you use them.',
  },
  PLACED_LOCAL: {
    status: 409,
    grpc: Code.FAILED_PRECONDITION,
    meaning:
      "The call asked to run only if the module's calls run remotely (x-splice-if-remote, a client's first call), and the policy places them in the client's process. Nothing ran.",
    fix: 'None: the client runs the call in its own process, as the x-splice-placement header says.',
    safeToResend: true,
  },
  JOB_SPEC_INVALID: {
    status: 400,
    grpc: Code.INVALID_ARGUMENT,
    meaning:
      'A job spec (POST /jobs) is malformed or cannot be planned: the message and `problems` name each field (an unknown module, no fn, split_size 0, more workers than jobs.max_workers, inputs not a list). Nothing was stored.',
    fix: "Fix the named field (see the README's Batch jobs section for every field and its limits).",
  },
  JOB_NOT_FOUND: {
    status: 404,
    grpc: Code.NOT_FOUND,
    meaning: 'No job has this id (finished jobs past jobs.keep_finished are deleted).',
    fix: 'Check the id with GET /jobs.',
  },
  JOB_WORKERS_UNAVAILABLE: {
    status: 409,
    grpc: Code.RESOURCE_EXHAUSTED,
    meaning:
      "A job sent to run now (when_busy=refuse, the client's jobs.run) cannot get its workers now: jobs.max_running jobs run, or jobs.max_workers would be passed, or jobs wait before it. Nothing was stored.",
    fix: 'Submit it instead (it waits in the queue), ask for fewer workers, or raise the jobs limits.',
  },
  RATE_LIMITED: {
    status: 429,
    grpc: Code.RESOURCE_EXHAUSTED,
    meaning:
      'This client address made server.control_rate_limit_per_minute control requests (load, unload, module config, policy, job submit or cancel) within the last minute. Nothing was done.',
    fix: 'Wait the seconds of the Retry-After header, or raise server.control_rate_limit_per_minute (0 turns the limit off).',
    safeToResend: true,
  },
  JOB_QUEUE_FULL: {
    status: 429,
    grpc: Code.RESOURCE_EXHAUSTED,
    meaning: 'jobs.max_queued jobs already wait for workers. Nothing was stored.',
    fix: 'Submit it later, cancel queued jobs, or raise jobs.max_queued.',
  },
  UNAUTHENTICATED: {
    status: 401,
    grpc: Code.UNAUTHENTICATED,
    meaning: 'The bearer token is missing or wrong.',
    fix: 'Send Authorization: Bearer <token> (client option `token` or SPLICE_AUTH_TOKEN).',
  },
  BAD_REQUEST: {
    status: 400,
    grpc: Code.INVALID_ARGUMENT,
    meaning: 'The request body or a parameter is malformed.',
    fix: 'Send what the REST API section of the README describes.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    grpc: Code.INVALID_ARGUMENT,
    meaning: 'The invoke body is neither application/msgpack nor application/json.',
    fix: 'Set Content-Type to application/msgpack (the client does) or application/json.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    grpc: Code.RESOURCE_EXHAUSTED,
    meaning: 'The request body is larger than server.max_payload_bytes.',
    fix: 'Send less per call, or raise max_payload_bytes.',
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    grpc: Code.UNIMPLEMENTED,
    meaning: 'The path exists, but not for this method; the Allow header lists the methods it takes.',
    fix: 'Use a method the Allow header names (see the REST API section).',
  },
  URI_TOO_LONG: {
    status: 414,
    grpc: Code.INVALID_ARGUMENT,
    meaning: 'A path parameter (a module name) is longer than 256 characters.',
    fix: 'Module names are npm package names or import specifiers: at most 214 characters.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    grpc: Code.INVALID_ARGUMENT,
    meaning: "The request's headers (or its URL) are larger than the server accepts.",
    fix: 'Send smaller headers.',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    grpc: Code.DEADLINE_EXCEEDED,
    meaning: 'The request did not arrive completely in time.',
    fix: 'Send the whole request promptly; check the network between client and pod-manager.',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    grpc: Code.NOT_FOUND,
    meaning: 'No such endpoint.',
    fix: 'See the REST API section of the README.',
  },
  REMOTE_ERROR: {
    status: 422,
    grpc: Code.UNKNOWN,
    meaning: 'JSON invocations only: the module threw; `remote` holds its name, message, code and stack.',
    fix: 'Fix the call (msgpack clients receive the same error as a RemoteError).',
  },
  SHUTTING_DOWN: {
    status: 503,
    grpc: Code.UNAVAILABLE,
    meaning: 'The pod-manager is stopping and takes no new work.',
    fix: 'Retry against another replica or after the restart.',
    safeToResend: true,
  },
  INTERNAL: {
    status: 500,
    grpc: Code.INTERNAL,
    meaning: 'A bug in the pod-manager.',
    fix: 'Report it with the log line that carries the request id.',
  },
} as const satisfies Record<string, ErrorSpec>;

/** A code of the table, or a gRPC status name forwarded from a module-server. */
export type ServiceErrorCode = keyof typeof errorTable | Code;

/** What the pod-manager throws to answer an error. */
export class ServiceError extends Error {
  override name = 'ServiceError';
  readonly statusCode: number;
  /** gRPC status name, sent as `status` in the body so clients can branch without knowing every code. */
  readonly grpc: Code;
  readonly extra: Record<string, unknown> | undefined;
  /** The request never reached a module (see SpliceError.safeToResend). */
  readonly safeToResend: boolean;

  constructor(
    readonly code: ServiceErrorCode,
    message: string,
    options: { cause?: unknown; extra?: Record<string, unknown>; safeToResend?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const spec: ErrorSpec | undefined = (errorTable as Record<string, ErrorSpec>)[code];
    this.grpc = spec?.grpc ?? (isCode(code) ? code : Code.UNKNOWN);
    this.statusCode = spec?.status ?? httpStatusFromCode(this.grpc);
    this.extra = options.extra;
    this.safeToResend = options.safeToResend ?? spec?.safeToResend ?? false;
  }

  /** A failure reported by a module-server (or the gRPC hop) keeps its gRPC status name as code. */
  static fromSplice(error: SpliceError): ServiceError {
    return new ServiceError(error.code, error.message, { cause: error, safeToResend: error.safeToResend });
  }

  /** The JSON body: `{ error: { code, status, message, safe_to_resend?, ... } }`. */
  toJSON(): { error: Record<string, unknown> } {
    const resend = this.safeToResend ? { safe_to_resend: true } : {};
    return { error: { code: this.code, status: this.grpc, message: this.message, ...resend, ...this.extra } };
  }
}

/** Maps anything thrown in a route to the error the client receives. */
export function serviceErrorFrom(error: unknown): ServiceError {
  if (error instanceof ServiceError) return error;
  if (error instanceof SpliceError) return ServiceError.fromSplice(error);
  const { statusCode, message } = error as { statusCode?: number; message?: string };
  if (statusCode === 413)
    return new ServiceError('PAYLOAD_TOO_LARGE', message ?? 'request body is too large');
  if (statusCode === 415) {
    return new ServiceError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${message ?? 'unsupported media type'}: send application/msgpack or application/json`,
    );
  }
  if (statusCode === 400) return new ServiceError('BAD_REQUEST', message ?? 'bad request');
  if (error instanceof Error && error.name === 'AbortError')
    return new ServiceError(Code.CANCELLED, 'the client went away');
  return new ServiceError('INTERNAL', 'internal error', { cause: error });
}
