// The reference chain's forwarder: Fastify takes POST /invoke with msgpack bytes and forwards them
// as they are to the reference server over grpc-js (a deadline per call), answering its bytes.
// Prints {"port":N} when it listens. Usage: node forwarder.mjs <server host:port>
import * as grpc from '@grpc/grpc-js';
import Fastify from 'fastify';
import { service } from './service.mjs';

const Client = grpc.makeGenericClientConstructor(service, 'Module');
const client = new Client(process.argv[2], grpc.credentials.createInsecure());
const app = Fastify({ logger: false });
app.addContentTypeParser('application/msgpack', { parseAs: 'buffer' }, (_req, body, done) =>
  done(null, body),
);
app.post('/invoke', (request, reply) => {
  client.invoke(request.body, { deadline: Date.now() + 10_000 }, (error, answer) => {
    if (error) reply.code(502).send({ error: error.message });
    else reply.type('application/msgpack').send(answer);
  });
});
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ port: app.server.address().port })}\n`);
