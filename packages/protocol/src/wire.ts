/**
 * The part of the protocol a thread that serves the wire needs, without the gRPC client library:
 * what a module-server's callback relay thread loads (`@splice-orc/protocol/wire`), so that it
 * starts in a few tens of ms beside the module.
 */
export {
  type CallbackRequest,
  type DroppedCallback,
  MAX_CALLBACK_ITEMS,
  parseCallbacksRequest,
} from './callbacks.js';
export { decode, encode } from './codec.js';
export { SpliceError } from './errors.js';
export { createGrpcServer, type GrpcServerCall } from './grpc-server.js';
export { PROGRAM_VERSION } from './program.js';
export { CREDENTIAL_METADATA, INVOKE_PATH } from './proto.js';
export { decodeMessage, encodeMessage, PayloadSpec } from './protobuf.js';
export { Code, grpcStatusFromCode } from './status.js';
