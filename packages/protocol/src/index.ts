export {
  type DecodeOptions,
  decode,
  describe,
  type EncodeOptions,
  encode,
  isPlainObject,
  MAX_DEPTH,
  RemoteRef,
  Slot,
} from './codec.js';
export { SpliceError } from './errors.js';
export {
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
  type ServingStatus,
} from './module-client.js';
export {
  type CallOp,
  type GetOp,
  type InvokeRequest,
  type InvokeResponse,
  type NewOp,
  type Op,
  PROGRAM_VERSION,
  parseRequest,
  type ReleaseOp,
  type RemoteErrorValue,
  type Target,
} from './program.js';
export {
  INVOKE_PATH,
  MODULE_SERVICE_NAME,
  moduleServiceDefinition,
  OUTCOME_TRAILER,
  type PayloadMessage,
  type ServerStats,
} from './proto.js';
export { bytesFromQuantity } from './quantity.js';
export { Code, codeFromGrpcStatus, grpcStatusFromCode, httpStatusFromCode, isCode } from './status.js';
