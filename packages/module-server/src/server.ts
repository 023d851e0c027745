/**
 * The module-server: one module, served over gRPC as `splice.v1.ModuleService/Invoke` (and
 * `InvokeBatch`: several programs, each answer streamed when ready) plus the standard health service. Failures of the module (a throw, a rejection) are answered as values;
 * failures of the invocation itself (malformed, refused, too large, too slow) as gRPC statuses.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http2';
import {
  BatchAnswerSpec,
  BatchRequestSpec,
  Code,
  createGrpcServer,
  decodeMessage,
  encodeMessage,
  type GrpcHandler,
  type GrpcServerCall,
  grpcStatusFromCode,
  INVOKE_BATCH_PATH,
  INVOKE_PATH,
  MAX_BATCH_PROGRAMS,
  MODULE_SERVICE_NAME,
  OUTCOME_TRAILER,
  PayloadSpec,
  SpliceError,
  StatsSpec,
  withDeadline,
} from '@splice-orc/protocol';
import {
  bindValue,
  CallbackHub,
  createInvocationHandler,
  type InvocationResult,
  loadModule,
  ObjectTable,
  type ObjectTableOptions,
} from '@splice-orc/runtime';
import { type CallbackRelay, startCallbackRelay } from './callback-relay.js';
import { credentialCheck, UNAUTHENTICATED_MESSAGE } from './credential.js';
import { Health } from './health.js';

/** Shortest secret a module-server accepts. */
export const MIN_SECRET_LENGTH = 16;

/** Options of {@link createModuleServer}. */
export interface ModuleServerOptions {
  /** Module specifier to serve. */
  moduleName: string;
  /** Directory whose node_modules holds the module; default: resolved from this package. */
  resolveFrom?: string | undefined;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Port to bind; 0 picks a free one. Default 0. */
  port?: number;
  /** Port of the callback endpoint (INVOKE.md 3.7); 0 picks a free one. Default 0. */
  callbackPort?: number;
  /** Longest one callback invocation waits for the app's answer, ms. Default 30 000. */
  callbackTimeoutMs?: number;
  /**
   * How long requests may wait for an app that has no exchange waiting and sends none, ms, before
   * they fail (it died between two exchanges, or blocks its thread). Default 10 000.
   */
  callbackAbsentMs?: number;
  /** Largest request or response payload, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Session lease, in ms: references of a client silent for this long are freed. Default 60 000. */
  leaseMs?: number;
  /** Longest an invocation may run when the caller set no deadline, in ms. Default 300 000. */
  maxCallMs?: number;
  /**
   * Id carried by every reference this server makes, which routes calls on them back here. Default:
   * random. In a pod it is the pod's name, which the pod-manager knows from the cluster.
   */
  serverId?: string | undefined;
  /**
   * The credential every Invoke and Stats call must carry (`authorization: Bearer <secret>`), at
   * least 16 characters: the pod-manager makes one per server and holds it alone. Health is open.
   */
  secret: string;
  /** Limits of the reference table (objects per session and per server, live sessions). */
  limits?: Pick<ObjectTableOptions, 'maxObjectsPerSession' | 'maxObjects' | 'maxSessions'>;
  /** A relay started earlier (main.ts starts it first, so that it boots beside the imports). */
  relay?: CallbackRelay | undefined;
}

/** A running module-server. */
export interface ModuleServer {
  /** The port actually bound. */
  readonly port: number;
  /** The port of the callback endpoint. */
  readonly callbackPort: number;
  /** Id of this server instance (random unless given), carried by every reference it makes. */
  readonly serverId: string;
  /** The reference table, for inspection. */
  readonly table: ObjectTable;
  /** Stops taking calls, waits up to `graceMs` for those in flight, then stops. */
  close(graceMs?: number): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Loads the module, binds the port and starts serving; health says SERVING once ready. */
export async function createModuleServer(options: ModuleServerOptions): Promise<ModuleServer> {
  if (typeof options.secret !== 'string' || options.secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`a module-server needs a secret of at least ${MIN_SECRET_LENGTH} characters`);
  }
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const serverId = options.serverId || randomBytes(6).toString('hex');
  const host = options.host ?? '127.0.0.1';
  // The relay thread boots while the module loads (main.ts starts it even earlier).
  const relay =
    options.relay ??
    startCallbackRelay({
      secret: options.secret,
      host,
      port: options.callbackPort ?? 0,
      serverId,
      maxMessageBytes,
      absentMs: options.callbackAbsentMs,
    });
  relay.setSecret(options.secret);
  let loaded: Awaited<ReturnType<typeof loadModule>>;
  let callbackPort: number;
  try {
    [loaded, callbackPort] = await Promise.all([
      loadModule({ name: options.moduleName, resolveFrom: options.resolveFrom }),
      relay.listening,
    ]);
  } catch (error) {
    await relay.close().catch(() => {});
    throw error;
  }
  const { root, exports } = loaded;
  const table = new ObjectTable({ ...options.limits, leaseMs: options.leaseMs ?? 60_000 });
  const health = new Health({ '': 'NOT_SERVING', [MODULE_SERVICE_NAME]: 'NOT_SERVING' });
  const counters = { inFlight: 0, calls: 0 };
  const authorized = credentialCheck(options.secret);
  const callbacks: CallbackHub = new CallbackHub({
    channel: relay.channel,
    table,
    serverId,
    timeoutMs: options.callbackTimeoutMs,
    bind: (value, session) => bindValue(value, { root, table, serverId, session, callbacks }),
  });
  const context: HandlerContext = {
    handle: createInvocationHandler({ root, table, serverId, callbacks }),
    counters,
    authorized,
    maxCallMs: options.maxCallMs ?? 300_000,
    maxMessageBytes,
  };
  const stats: GrpcHandler = (call) => {
    if (!authorized(call.headers)) return unauthenticated(call);
    const held = table.stats();
    call.write(
      encodeMessage(StatsSpec, {
        server_id: serverId,
        ...held,
        in_flight: counters.inFlight,
        calls: counters.calls,
        exports,
      }),
    );
    call.end();
  };
  const server = createGrpcServer({
    maxMessageBytes,
    methods: {
      ...health.methods(),
      [INVOKE_PATH]: createInvokeHandler(context),
      [INVOKE_BATCH_PATH]: createBatchHandler(context),
      [`/${MODULE_SERVICE_NAME}/Stats`]: stats,
    },
  });
  const port = await server.listen(host, options.port ?? 0);
  table.startSweeping();
  health.setStatus('', 'SERVING');
  health.setStatus(MODULE_SERVICE_NAME, 'SERVING');
  const close = async (graceMs = 5_000) => {
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(MODULE_SERVICE_NAME, 'NOT_SERVING');
    health.endWatches();
    table.stopSweeping();
    await server.close(graceMs);
    await relay.close();
  };
  return { port, callbackPort, serverId, table, close, [Symbol.asyncDispose]: () => close() };
}

function unauthenticated(call: GrpcServerCall): void {
  call.fail(grpcStatusFromCode(Code.UNAUTHENTICATED), UNAUTHENTICATED_MESSAGE);
}

interface HandlerContext {
  handle: (payload: Uint8Array, deadline?: number) => Promise<InvocationResult>;
  authorized: (headers: IncomingHttpHeaders) => boolean;
  maxCallMs: number;
  maxMessageBytes: number;
  counters: { inFlight: number; calls: number };
}

/** Runs one program under its deadline; settles with its answer, or the error it failed with. */
function run(h: HandlerContext, payload: Uint8Array, timeoutMs: number): Promise<InvocationResult> {
  h.counters.inFlight++;
  const work = h.handle(payload, Date.now() + timeoutMs).finally(() => {
    h.counters.inFlight--;
    h.counters.calls++;
  });
  return withDeadline(work, {
    timeoutMs,
    onTimeout: () =>
      new SpliceError(Code.DEADLINE_EXCEEDED, `invocation did not finish within ${timeoutMs} ms`),
  }).then((answer) => {
    if (answer.payload.byteLength > h.maxMessageBytes) {
      throw new SpliceError(
        Code.RESOURCE_EXHAUSTED,
        `the answer (${answer.payload.byteLength} bytes) is larger than the largest message, ${h.maxMessageBytes} bytes`,
      );
    }
    return answer;
  });
}

function createInvokeHandler(h: HandlerContext): GrpcHandler {
  return (call) => {
    if (!h.authorized(call.headers)) return unauthenticated(call);
    const { payload } = decodeMessage(PayloadSpec, call.request);
    const budget = Math.min(h.maxCallMs, Math.max(0, call.deadline - Date.now()));
    run(h, payload as Buffer, budget).then(
      (answer) => {
        call.write(encodeMessage(PayloadSpec, { payload: answer.payload }));
        // The pod-manager counts outcomes without decoding payloads: a throw is flagged in a trailer.
        call.end(answer.threw ? { [OUTCOME_TRAILER]: 'remote-error' } : undefined);
      },
      (reason: unknown) => {
        const error = SpliceError.from(reason, Code.INTERNAL);
        call.fail(grpcStatusFromCode(error.code), error.message);
      },
    );
  };
}

/**
 * InvokeBatch: every program runs on its own (async ones overlap; one failing fails only its own
 * answer), under its own deadline, and its answer is written as soon as it is ready; the stream
 * ends when the last one is written.
 */
function createBatchHandler(h: HandlerContext): GrpcHandler {
  return (call) => {
    if (!h.authorized(call.headers)) return unauthenticated(call);
    const request = decodeMessage(BatchRequestSpec, call.request);
    const payloads = request.payloads as Buffer[];
    const timeouts = request.timeouts_ms as number[];
    if (payloads.length > MAX_BATCH_PROGRAMS) {
      return call.fail(
        grpcStatusFromCode(Code.INVALID_ARGUMENT),
        `a batch holds at most ${MAX_BATCH_PROGRAMS} programs, this one ${payloads.length}`,
      );
    }
    const budget = Math.min(h.maxCallMs, Math.max(0, call.deadline - Date.now()));
    let left = payloads.length;
    if (left === 0) return call.end();
    payloads.forEach((payload, index) => {
      run(h, payload, Math.min(budget, timeouts[index] || budget))
        .then(
          ({ payload: answer, threw }) => ({ index, payload: answer, threw }),
          (reason: unknown) => {
            const error = SpliceError.from(reason, Code.INTERNAL);
            return { index, status: grpcStatusFromCode(error.code), message: error.message };
          },
        )
        .then((answer) => {
          call.write(encodeMessage(BatchAnswerSpec, answer));
          if (--left === 0) call.end();
        });
    });
  };
}
