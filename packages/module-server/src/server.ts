/**
 * The module-server: one module, served over gRPC as `splice.v1.ModuleService/Invoke` (and
 * `InvokeBatch`: several programs, each answer streamed when ready) plus the standard health service. Failures of the module (a throw, a rejection) are answered as values;
 * failures of the invocation itself (malformed, refused, too large, too slow) as gRPC statuses.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  type BatchAnswerMessage,
  type BatchRequestMessage,
  Code,
  CREDENTIAL_METADATA,
  grpcStatusFromCode,
  MAX_BATCH_PROGRAMS,
  MODULE_SERVICE_NAME,
  moduleServiceDefinition,
  OUTCOME_TRAILER,
  type PayloadMessage,
  type ServerStats,
  SpliceError,
  withDeadline,
} from '@splice-orc/protocol';
import {
  createInvocationHandler,
  type InvocationResult,
  loadModule,
  ObjectTable,
  type ObjectTableOptions,
} from '@splice-orc/runtime';
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
}

/** A running module-server. */
export interface ModuleServer {
  /** The port actually bound. */
  readonly port: number;
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
  const { root } = await loadModule({ name: options.moduleName, resolveFrom: options.resolveFrom });
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const serverId = options.serverId || randomBytes(6).toString('hex');
  const table = new ObjectTable({ ...options.limits, leaseMs: options.leaseMs ?? 60_000 });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
  });
  const health = new Health({ '': 'NOT_SERVING', [MODULE_SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  const counters = { inFlight: 0, calls: 0 };
  const authorized = credentialCheck(options.secret);
  const handle = createInvocationHandler({ root, table, serverId });
  const invoke = createInvokeHandler({
    handle,
    counters,
    authorized,
    maxCallMs: options.maxCallMs ?? 300_000,
  });
  const stats: grpc.handleUnaryCall<unknown, ServerStats> = (call, callback) => {
    if (!authorized(call.metadata)) return callback(unauthenticated());
    const held = table.stats();
    callback(null, { server_id: serverId, ...held, in_flight: counters.inFlight, calls: counters.calls });
  };
  const invokeBatch = createBatchHandler({
    handle,
    counters,
    authorized,
    maxCallMs: options.maxCallMs ?? 300_000,
  });
  server.addService(moduleServiceDefinition(), { Invoke: invoke, InvokeBatch: invokeBatch, Stats: stats });
  const port = await bind(server, `${options.host ?? '127.0.0.1'}:${options.port ?? 0}`);
  table.startSweeping();
  health.setStatus('', 'SERVING');
  health.setStatus(MODULE_SERVICE_NAME, 'SERVING');
  const close = async (graceMs = 5_000) => {
    health.setStatus('', 'NOT_SERVING');
    health.setStatus(MODULE_SERVICE_NAME, 'NOT_SERVING');
    health.endWatches();
    table.stopSweeping();
    await shutdown(server, graceMs);
  };
  return { port, serverId, table, close, [Symbol.asyncDispose]: () => close() };
}

function bind(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) =>
      error ? reject(error) : resolve(port),
    );
  });
}

/** Takes no new calls, lets those in flight finish within `graceMs`, then closes every connection. */
function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Checks a call's credential against the secret, in constant time. */
function credentialCheck(secret: string): (metadata: grpc.Metadata) => boolean {
  const expected = Buffer.from(`Bearer ${secret}`);
  return (metadata) => {
    const [given] = metadata.get(CREDENTIAL_METADATA);
    const bytes = Buffer.from(typeof given === 'string' ? given : '');
    return bytes.length === expected.length && timingSafeEqual(bytes, expected);
  };
}

function unauthenticated(): grpc.ServiceError {
  return Object.assign(new Error('missing or wrong credential'), {
    code: grpc.status.UNAUTHENTICATED,
    details: 'missing or wrong credential: only the pod-manager that started this module-server may call it',
    metadata: new grpc.Metadata(),
  });
}

interface HandlerContext {
  handle: (payload: Uint8Array) => Promise<InvocationResult>;
  authorized: (metadata: grpc.Metadata) => boolean;
  maxCallMs: number;
  counters: { inFlight: number; calls: number };
}

type UnaryHandler = grpc.handleUnaryCall<PayloadMessage, PayloadMessage>;

function createInvokeHandler(h: HandlerContext): UnaryHandler {
  return (call, callback) => {
    if (!h.authorized(call.metadata)) return callback(unauthenticated());
    const budget = Math.min(h.maxCallMs, msUntil(call.getDeadline()));
    h.counters.inFlight++;
    const work = h.handle(call.request.payload).finally(() => {
      h.counters.inFlight--;
      h.counters.calls++;
    });
    withDeadline(work, {
      timeoutMs: budget,
      onTimeout: () =>
        new SpliceError(Code.DEADLINE_EXCEEDED, `invocation did not finish within ${budget} ms`),
    }).then(
      ({ payload, threw }) => {
        // The pod-manager counts outcomes without decoding payloads: a throw is flagged in a trailer.
        const trailer = new grpc.Metadata();
        if (threw) trailer.set(OUTCOME_TRAILER, 'remote-error');
        callback(
          null,
          { payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength) },
          trailer,
        );
      },
      (reason: unknown) => {
        const error = SpliceError.from(reason, Code.INTERNAL);
        callback({ code: grpcStatusFromCode(error.code), details: error.message });
      },
    );
  };
}

function msUntil(deadline: grpc.Deadline): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : Number.POSITIVE_INFINITY;
}

type StreamHandler = grpc.handleServerStreamingCall<BatchRequestMessage, BatchAnswerMessage>;

/**
 * InvokeBatch: every program runs on its own (async ones overlap; one failing fails only its own
 * answer), under its own deadline, and its answer is written as soon as it is ready; the stream
 * ends when the last one is written.
 */
function createBatchHandler(h: HandlerContext): StreamHandler {
  return (call) => {
    if (!h.authorized(call.metadata)) return void call.emit('error', unauthenticated());
    const { payloads, timeouts_ms: timeouts } = call.request;
    if (payloads.length > MAX_BATCH_PROGRAMS) {
      return void call.emit('error', {
        code: grpc.status.INVALID_ARGUMENT,
        details: `a batch holds at most ${MAX_BATCH_PROGRAMS} programs, this one ${payloads.length}`,
      });
    }
    const budget = Math.min(h.maxCallMs, msUntil(call.getDeadline()));
    let left = payloads.length;
    if (left === 0) return void call.end();
    payloads.forEach((payload, index) => {
      const timeoutMs = Math.min(budget, timeouts[index] || budget);
      h.counters.inFlight++;
      const work = h.handle(payload).finally(() => {
        h.counters.inFlight--;
        h.counters.calls++;
      });
      const empty = Buffer.alloc(0);
      withDeadline(work, {
        timeoutMs,
        onTimeout: () =>
          new SpliceError(Code.DEADLINE_EXCEEDED, `invocation did not finish within ${timeoutMs} ms`),
      })
        .then(
          ({ payload: answer, threw }): BatchAnswerMessage => ({
            index,
            payload: Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength),
            threw,
            status: 0,
            message: '',
          }),
          (reason: unknown): BatchAnswerMessage => {
            const error = SpliceError.from(reason, Code.INTERNAL);
            return {
              index,
              payload: empty,
              threw: false,
              status: grpcStatusFromCode(error.code),
              message: error.message,
            };
          },
        )
        .then((answer) => {
          if (!call.cancelled) call.write(answer);
          if (--left === 0 && !call.cancelled) call.end();
        });
    });
  };
}
