export {
  BATCH_TYPE,
  type BatchTrailer,
  countBatchPrograms,
  FrameReader,
  frameMessage,
  MAX_BATCH_PROGRAMS,
  readBatchAnswer,
  splitBatch,
  TRAILER_FLAG,
  trailerFrame,
  withBatchIndex,
} from './batch.js';
export {
  type CallbackAnswer,
  type CallbackOutcome,
  type CallbackRequest,
  type CallbacksOp,
  type CallbacksResult,
  type DroppedCallback,
  droppedOf,
  MAX_CALLBACK_ITEMS,
  MAX_CALLBACK_WAIT_MS,
  parseCallbacksRequest,
} from './callbacks.js';
export {
  CallbackRef,
  checkDepth,
  type DecodeOptions,
  decode,
  describe,
  type EncodeOptions,
  encode,
  isPlainObject,
  MAX_CALLBACK_ID_LENGTH,
  MAX_DEPTH,
  RemoteRef,
  Slot,
} from './codec.js';
export { SpliceError } from './errors.js';
export {
  createGrpcServer,
  type GrpcHandler,
  type GrpcServer,
  type GrpcServerCall,
  type GrpcServerOptions,
} from './grpc-server.js';
export {
  type BatchAnswer,
  type ChannelCallOptions,
  createInvokeChannel,
  type InvokeAnswer,
  type InvokeChannel,
  type InvokeChannelOptions,
} from './invoke-channel.js';
export {
  type CallOptions,
  createModuleClient,
  errorFromGrpc,
  type ModuleClient,
  type ModuleClientOptions,
} from './module-client.js';
export {
  type CallOp,
  type CloseOp,
  type GetOp,
  type InvokeRequest,
  type InvokeResponse,
  MAX_PULL_ITEMS,
  type NewOp,
  type Op,
  PROGRAM_VERSION,
  type PullOp,
  type PullResult,
  parseRequest,
  type ReleaseOp,
  type RemoteErrorValue,
  type Target,
} from './program.js';
export {
  type BatchAnswerMessage,
  type BatchRequestMessage,
  CREDENTIAL_METADATA,
  encodeBatchRequest,
  HEALTH_SERVICE_NAME,
  healthServiceDefinition,
  INVOKE_BATCH_PATH,
  INVOKE_PATH,
  MODULE_SERVICE_NAME,
  moduleServiceDefinition,
  OUTCOME_TRAILER,
  type PayloadMessage,
  SERVING_STATUSES,
  type ServerStats,
  type ServingStatus,
} from './proto.js';
export {
  BatchAnswerSpec,
  BatchRequestSpec,
  decodeMessage,
  EmptySpec,
  encodeMessage,
  HealthRequestSpec,
  HealthResponseSpec,
  type Message,
  type MessageSpec,
  PayloadSpec,
  StatsSpec,
} from './protobuf.js';
export {
  Kwargs,
  kw,
  NDARRAY_DTYPES,
  NDArray,
  type NDArrayData,
  type NDArrayDType,
  type NestedArray,
} from './python-values.js';
export { bytesFromQuantity } from './quantity.js';
export * as Rest from './rest.js';
export { type DeadlineOptions, linkedSignal, withDeadline } from './signals.js';
export { Code, codeFromGrpcStatus, grpcStatusFromCode, httpStatusFromCode, isCode } from './status.js';
