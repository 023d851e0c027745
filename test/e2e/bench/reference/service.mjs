// The reference chain's one gRPC method, raw bytes both ways (shared by its server and forwarder).
const identity = (b) => b;

export const service = {
  invoke: {
    path: '/reference.Module/Invoke',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
