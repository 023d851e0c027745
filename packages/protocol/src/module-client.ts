/**
 * A gRPC client for one module-server: Invoke with a deadline, and the standard health check. The
 * pod-manager forwards through it; tests and benchmarks use it to talk to a server directly.
 */
import * as grpc from '@grpc/grpc-js';
import { SpliceError } from './errors.js';
import {
  CREDENTIAL_METADATA,
  healthServiceDefinition,
  MODULE_SERVICE_NAME,
  moduleServiceDefinition,
  type PayloadMessage,
  SERVING_STATUSES,
  type ServerStats,
  type ServingStatus,
} from './proto.js';
import { Code, codeFromGrpcStatus } from './status.js';

/** Options of {@link createModuleClient}. */
export interface ModuleClientOptions {
  /** Largest payload either way, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** The server's secret, sent with Invoke and Stats (health needs none). */
  secret?: string | undefined;
}

/** Options of one call. */
export interface CallOptions {
  /** How long the call may take, in ms. */
  timeoutMs: number;
  /** Cancels the call. */
  signal?: AbortSignal | undefined;
}

/** A client of one module-server. */
export interface ModuleClient {
  /** Sends an encoded program and resolves with the encoded response; rejects with a SpliceError. */
  invoke(payload: Uint8Array, options: CallOptions): Promise<Buffer>;
  /** Asks the health service whether the module service is serving. */
  health(options: CallOptions): Promise<ServingStatus>;
  /** What the server holds and does now. */
  stats(options: CallOptions): Promise<ServerStats>;
  close(): void;
}

type RawUnary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Res) => void,
) => grpc.ClientUnaryCall;

const ModuleServiceClient = grpc.makeGenericClientConstructor(moduleServiceDefinition(), 'ModuleService');
const HealthClient = grpc.makeGenericClientConstructor(healthServiceDefinition(), 'Health');

/** Connects (lazily) to the module-server at `address` (`host:port`). */
export function createModuleClient(address: string, options: ModuleClientOptions = {}): ModuleClient {
  const max = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const channelOptions = { 'grpc.max_receive_message_length': max, 'grpc.max_send_message_length': max };
  const client = new ModuleServiceClient(address, grpc.credentials.createInsecure(), channelOptions);
  const health = new HealthClient(address, grpc.credentials.createInsecure(), {
    channelOverride: client.getChannel(),
  });
  const methods = client as unknown as {
    Invoke: RawUnary<PayloadMessage, PayloadMessage>;
    Stats: RawUnary<Record<string, never>, ServerStats>;
  };
  const invoke = methods.Invoke.bind(client);
  const stats = methods.Stats.bind(client);
  const check = (
    health as unknown as { Check: RawUnary<{ service: string }, { status: number }> }
  ).Check.bind(health);
  const credential = () => {
    const metadata = new grpc.Metadata();
    if (options.secret) metadata.set(CREDENTIAL_METADATA, `Bearer ${options.secret}`);
    return metadata;
  };
  return {
    invoke: (payload, call) =>
      unary(invoke, { payload: payload as Buffer }, call, credential()).then((res) => res.payload),
    health: (call) =>
      unary(check, { service: MODULE_SERVICE_NAME }, call, new grpc.Metadata()).then(
        (res) => SERVING_STATUSES[res.status] ?? 'UNKNOWN',
      ),
    stats: (call) => unary(stats, {}, call, credential()),
    close: () => client.close(),
  };
}

function unary<Req, Res>(
  method: RawUnary<Req, Res>,
  request: Req,
  call: CallOptions,
  metadata: grpc.Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    if (call.signal?.aborted) return reject(aborted(call.signal));
    const deadline = Date.now() + call.timeoutMs;
    const pending = method(request, metadata, { deadline }, (error, response) => {
      call.signal?.removeEventListener('abort', onAbort);
      if (error) reject(errorFromGrpc(error, call.timeoutMs));
      else resolve(response as Res);
    });
    const onAbort = () => pending.cancel();
    call.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function aborted(signal: AbortSignal): SpliceError {
  return new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: signal.reason });
}

/** Maps a grpc-js error to a SpliceError with the same status name and the server's message. */
export function errorFromGrpc(error: grpc.ServiceError, timeoutMs: number): SpliceError {
  const code = codeFromGrpcStatus(error.code);
  const message =
    code === Code.DEADLINE_EXCEEDED && error.details === 'Deadline exceeded'
      ? `no answer from the module-server within ${timeoutMs} ms`
      : error.details || error.message;
  return new SpliceError(code, message, { cause: error });
}
