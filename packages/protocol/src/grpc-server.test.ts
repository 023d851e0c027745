// The lean gRPC server's own guarantees, through the lean client (invoke-channel.ts) and raw HTTP/2:
// a body that never finishes arriving is reset, a handler's fault is a status, and close() lets the
// calls in flight end while refusing new ones.
import * as http2 from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { createGrpcServer, type GrpcServer } from './grpc-server.js';
import { createInvokeChannel } from './invoke-channel.js';
import { INVOKE_PATH } from './proto.js';
import { decodeMessage, encodeMessage, PayloadSpec } from './protobuf.js';

let server: GrpcServer | undefined;
afterEach(async () => {
  await server?.close(100);
  server = undefined;
});

/** A server whose Invoke echoes the payload after `delayMs` (or throws when it is 'throw'). */
async function echoServer(options: { requestBodyMs?: number; delayMs?: number } = {}): Promise<number> {
  server = createGrpcServer({
    requestBodyMs: options.requestBodyMs,
    methods: {
      [INVOKE_PATH]: (call) => {
        const payload = decodeMessage(PayloadSpec, call.request).payload as Buffer;
        if (payload.toString() === 'throw') throw new Error('the handler broke');
        setTimeout(() => {
          call.write(encodeMessage(PayloadSpec, { payload }));
          call.end();
        }, options.delayMs ?? 0);
      },
    },
  });
  return server.listen('127.0.0.1', 0);
}

describe('the lean gRPC server', () => {
  it('answers a handler that throws with INTERNAL and its message, and keeps serving', async () => {
    const port = await echoServer();
    const channel = createInvokeChannel(`127.0.0.1:${port}`);
    await expect(channel.invoke(Buffer.from('throw'), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'the handler broke',
    });
    const answer = await channel.invoke(Buffer.from('hi'), { timeoutMs: 2_000 });
    expect(answer.payload.toString()).toBe('hi');
    channel.close();
  });

  it('resets a request whose body has not arrived within requestBodyMs', async () => {
    const port = await echoServer({ requestBodyMs: 300 });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const stream = session.request(
      { ':method': 'POST', ':path': INVOKE_PATH, 'content-type': 'application/grpc', te: 'trailers' },
      { endStream: false },
    );
    stream.on('error', () => undefined);
    stream.write(Buffer.from([0, 0, 0, 0, 10])); // announces 10 bytes, never sends them
    const started = Date.now();
    await new Promise((resolve) => stream.on('close', resolve));
    session.close();
    expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('on close, lets a call in flight finish and refuses new connections', async () => {
    const port = await echoServer({ delayMs: 300 });
    const channel = createInvokeChannel(`127.0.0.1:${port}`);
    const inFlight = channel.invoke(Buffer.from('slow'), { timeoutMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closed = (server as GrpcServer).close(5_000);
    server = undefined;
    expect((await inFlight).payload.toString()).toBe('slow');
    await closed;
    const later = createInvokeChannel(`127.0.0.1:${port}`);
    await expect(later.invoke(Buffer.from('x'), { timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      safeToResend: true,
    });
    later.close();
    channel.close();
  });
});
