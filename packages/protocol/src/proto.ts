/**
 * The gRPC contract of `proto/` as grpc-js service definitions: `splice.v1.ModuleService` and the
 * standard `grpc.health.v1.Health`, with the hand-written protobuf codec of `protobuf.ts` (module-
 * servers cannot run protobufjs's generated code; see there). Servers and clients take their
 * definitions from here and nowhere else.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  BatchAnswerSpec,
  BatchRequestSpec,
  decodeMessage,
  EmptySpec,
  encodeMessage,
  HealthRequestSpec,
  HealthResponseSpec,
  type MessageSpec,
  PayloadSpec,
  StatsSpec,
} from './protobuf.js';

/** Package-qualified name of the service, as it appears in gRPC paths and health checks. */
export const MODULE_SERVICE_NAME = 'splice.v1.ModuleService';

/** Package-qualified name of the standard health service. */
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

/**
 * Trailer a module-server sets on an Invoke answer whose module threw (value `remote-error`), so the
 * pod-manager can count outcomes without decoding payloads.
 */
export const OUTCOME_TRAILER = 'splice-outcome';

/**
 * Metadata carrying the module-server's credential (`Bearer <secret>`) on Invoke and Stats. The
 * secret is made by whoever starts the server (the pod-manager) and given to it alone; health
 * checks need none, so that probes work.
 */
export const CREDENTIAL_METADATA = 'authorization';

/** Full gRPC method path of Invoke, for code that sends raw calls. */
export const INVOKE_PATH = `/${MODULE_SERVICE_NAME}/Invoke`;
/** Full gRPC method path of InvokeBatch (several programs, answers streamed as they are ready). */
export const INVOKE_BATCH_PATH = `/${MODULE_SERVICE_NAME}/InvokeBatch`;

/** What `Stats` answers. */
export interface ServerStats {
  server_id: string;
  sessions: number;
  objects: number;
  in_flight: number;
  calls: number;
  /** The names a caller can reach on the module's root (what `import { name }` needs), sorted. */
  exports: string[];
}

/** `InvokeBatchRequest`: programs and each one's own deadline, ms (0 = the call's). */
export interface BatchRequestMessage {
  payloads: Buffer[];
  timeouts_ms: number[];
}

/** `InvokeBatchAnswer`: one program's answer, or (status ≠ 0) the gRPC status it failed with. */
export interface BatchAnswerMessage {
  index: number;
  payload: Buffer;
  threw: boolean;
  status: number;
  message: string;
}

/** The payload message of both directions of Invoke. */
export interface PayloadMessage {
  payload: Buffer;
}

/** `grpc.health.v1.HealthCheckResponse.ServingStatus`, by name. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** ServingStatus names in enum order (their index is their number on the wire). */
export const SERVING_STATUSES: readonly ServingStatus[] = [
  'UNKNOWN',
  'SERVING',
  'NOT_SERVING',
  'SERVICE_UNKNOWN',
];

function method(
  service: string,
  name: string,
  request: MessageSpec,
  response: MessageSpec,
  responseStream = false,
): grpc.MethodDefinition<object, object> {
  return {
    path: `/${service}/${name}`,
    originalName: name,
    requestStream: false,
    responseStream,
    requestSerialize: (message: object) => encodeMessage(request, message as Record<string, unknown>),
    requestDeserialize: (bytes: Buffer) => decodeMessage(request, bytes),
    responseSerialize: (message: object) => encodeMessage(response, message as Record<string, unknown>),
    responseDeserialize: (bytes: Buffer) => decodeMessage(response, bytes),
  };
}

const moduleService: grpc.ServiceDefinition = {
  Invoke: method(MODULE_SERVICE_NAME, 'Invoke', PayloadSpec, PayloadSpec),
  InvokeBatch: method(MODULE_SERVICE_NAME, 'InvokeBatch', BatchRequestSpec, BatchAnswerSpec, true),
  Stats: method(MODULE_SERVICE_NAME, 'Stats', EmptySpec, StatsSpec),
};

const healthService: grpc.ServiceDefinition = {
  Check: method(HEALTH_SERVICE_NAME, 'Check', HealthRequestSpec, HealthResponseSpec),
  Watch: method(HEALTH_SERVICE_NAME, 'Watch', HealthRequestSpec, HealthResponseSpec, true),
};

/** The ModuleService definition (Invoke, Stats). */
export function moduleServiceDefinition(): grpc.ServiceDefinition {
  return moduleService;
}

/** The grpc.health.v1.Health definition (Check, Watch). `status` travels as the enum's number. */
export function healthServiceDefinition(): grpc.ServiceDefinition {
  return healthService;
}

/** The bytes of an `InvokeBatchRequest` (what a client sends; the pod-manager forwards it as it is). */
export function encodeBatchRequest(request: { payloads: Uint8Array[]; timeouts_ms: number[] }): Buffer {
  return encodeMessage(BatchRequestSpec, request);
}
