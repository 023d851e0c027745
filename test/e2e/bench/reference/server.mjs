// The reference chain's module-server: a grpc-js server with one unary method that decodes a
// msgpack program (one call op), runs the fixture's `add` and answers msgpack, nothing else. Prints
// {"port":N} when it listens.
import * as grpc from '@grpc/grpc-js';
import { pack, unpack } from 'msgpackr';
import { service } from './service.mjs';

const functions = { add: (a, b) => a + b };
const server = new grpc.Server();
server.addService(service, {
  invoke(call, callback) {
    const program = unpack(call.request);
    const op = program.ops[0];
    callback(null, pack({ ok: true, value: functions[op.path[0]](...op.args) }));
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
