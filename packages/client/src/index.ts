export { Kwargs, kw, NDArray, type NDArrayDType, type NestedArray } from '@splice-orc/protocol';
export { type CallOptions, type ConnectOptions, connect, type SpliceClient } from './connect.js';
export { Code, RemoteError, SpliceError } from './errors.js';
export type { BatchLimits } from './http-link.js';
export type { Job, JobResult, JobSpec, Jobs, JobWaitOptions } from './jobs.js';
export { createTransport, type RequestOptions, type Transport, type TransportOptions } from './transport.js';
export type { Remote, RemoteArg, RemoteChain, Resolved } from './types.js';
