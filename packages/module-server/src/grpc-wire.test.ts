// The module-server speaks standard gRPC on node:http2 (protocol's grpc-server.ts): grpc-js clients
// get every method, streams and statuses as from any gRPC server, and requests that are not well-formed
// gRPC, too large, compressed or too slow to arrive get a clear status, never a hang.
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import {
  createModuleClient,
  decode,
  encode,
  HEALTH_SERVICE_NAME,
  healthServiceDefinition,
  INVOKE_PATH,
  type InvokeResponse,
  MODULE_SERVICE_NAME,
} from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModuleServer, type ModuleServer } from './server.js';

const secret = 'grpc-wire-test-secret';
const calc = fileURLToPath(new URL('../../../test/fixtures/calc/index.js', import.meta.url));
let server: ModuleServer;
let address: string;

beforeAll(async () => {
  server = await createModuleServer({ moduleName: calc, secret, maxMessageBytes: 64 * 1024 });
  address = `127.0.0.1:${server.port}`;
});
afterAll(() => server.close());

/** One raw HTTP/2 request; resolves with the response's headers, trailers and body. */
function raw(headers: http2.OutgoingHttpHeaders, body: Buffer | undefined, hold = false) {
  const session = http2.connect(`http://${address}`);
  return new Promise<{
    headers: http2.IncomingHttpHeaders;
    trailers: http2.IncomingHttpHeaders;
    body: Buffer;
    rst: number;
  }>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ...headers }, { endStream: false });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      responseHeaders = h;
    });
    stream.on('trailers', (t) => {
      trailers = t;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      session.close();
      resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks), rst: stream.rstCode ?? 0 });
    });
    session.on('error', reject);
    if (body) stream.write(body);
    if (!hold) stream.end();
  });
}

const grpcHeaders = (path: string) => ({
  ':path': path,
  'content-type': 'application/grpc',
  te: 'trailers',
  authorization: `Bearer ${secret}`,
});
const frame = (body: Uint8Array, flag = 0) => {
  const out = Buffer.alloc(5 + body.length);
  out[0] = flag;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
};
/** An InvokeRequest message (field 1, bytes) around `payload`, for payloads under 128 bytes. */
const invokeMessage = (payload: Uint8Array) => Buffer.concat([Buffer.from([0x0a, payload.length]), payload]);
const addProgram = encode({
  v: 1,
  session: 's',
  ops: [{ op: 'call', target: null, path: ['add'], args: [2, 3] }],
});

describe('the module-server on the gRPC wire', () => {
  it('answers a grpc-js client: Invoke, Stats, health Check, and UNIMPLEMENTED for an unknown method', async () => {
    const client = createModuleClient(address, { secret });
    try {
      const answer = decode(await client.invoke(addProgram, { timeoutMs: 2_000 })) as InvokeResponse;
      expect(answer).toMatchObject({ ok: true, value: 5 });
      expect(await client.stats({ timeoutMs: 2_000 })).toMatchObject({ server_id: server.serverId });
      expect(await client.health({ timeoutMs: 2_000 })).toBe('SERVING');
    } finally {
      client.close();
    }
    const identity = (b: Buffer) => b;
    const Generic = grpc.makeGenericClientConstructor(
      {
        nope: {
          path: `/${MODULE_SERVICE_NAME}/Nope`,
          requestStream: false,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      'Generic',
    );
    const generic = new Generic(address, grpc.credentials.createInsecure()) as unknown as {
      nope: (r: Buffer, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void;
      close: () => void;
    };
    const error = await new Promise<grpc.ServiceError | null>((resolve) =>
      generic.nope(Buffer.alloc(0), { deadline: Date.now() + 2_000 }, resolve),
    );
    generic.close();
    expect(error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(error?.details).toContain('/splice.v1.ModuleService/Nope');
  });

  it('streams health Watch to a grpc-js client: the current status, then each change, until it cancels', async () => {
    const other = await createModuleServer({ moduleName: calc, secret });
    const Health = grpc.makeGenericClientConstructor(healthServiceDefinition(), 'Health');
    const client = new Health(`127.0.0.1:${other.port}`, grpc.credentials.createInsecure()) as unknown as {
      Watch: (r: { service: string }) => grpc.ClientReadableStream<{ status: number }>;
      close: () => void;
    };
    const seen: number[] = [];
    const call = client.Watch({ service: MODULE_SERVICE_NAME });
    const ended = new Promise<void>((resolve) => {
      call.on('data', (m: { status: number }) => seen.push(m.status));
      call.on('error', () => resolve());
      call.on('end', () => resolve());
    });
    await expect.poll(() => seen).toEqual([1]); // SERVING
    await other.close(1_000); // NOT_SERVING is sent, then the watch ends
    await ended;
    client.close();
    expect(seen).toEqual([1, 2]);
    expect(HEALTH_SERVICE_NAME).toBe('grpc.health.v1.Health');
  });

  it('answers a request that is not gRPC with HTTP 415', async () => {
    const res = await raw({ ':path': INVOKE_PATH, 'content-type': 'application/json' }, Buffer.from('{}'));
    expect(res.headers[':status']).toBe(415);
  });

  it('refuses a compressed message with UNIMPLEMENTED, a malformed grpc-timeout with INVALID_ARGUMENT', async () => {
    const compressed = await raw(
      { ...grpcHeaders(INVOKE_PATH), 'grpc-encoding': 'gzip' },
      frame(invokeMessage(addProgram), 1),
    );
    expect(compressed.headers['grpc-status']).toBe('12');
    expect(decodeURIComponent(String(compressed.headers['grpc-message']))).toContain("compression 'gzip'");
    const badTimeout = await raw(
      { ...grpcHeaders(INVOKE_PATH), 'grpc-timeout': '5 seconds' },
      frame(invokeMessage(addProgram)),
    );
    expect(badTimeout.headers['grpc-status']).toBe('3');
  });

  it('refuses a body that is not exactly one message, and a truncated one, with INTERNAL', async () => {
    const two = await raw(
      grpcHeaders(INVOKE_PATH),
      Buffer.concat([frame(invokeMessage(addProgram)), frame(Buffer.alloc(0))]),
    );
    expect(two.headers['grpc-status']).toBe('13');
    expect(decodeURIComponent(String(two.headers['grpc-message']))).toContain(
      'more than one request message',
    );
    const truncated = await raw(grpcHeaders(INVOKE_PATH), frame(invokeMessage(addProgram)).subarray(0, 10));
    expect(truncated.headers['grpc-status']).toBe('13');
    const empty = await raw(grpcHeaders(INVOKE_PATH), undefined);
    expect(empty.headers['grpc-status']).toBe('13');
  });

  it('refuses a request message over the limit as soon as it passes it, and an answer over it too', async () => {
    const big = await raw(grpcHeaders(INVOKE_PATH), frame(Buffer.alloc(65 * 1024)), true);
    expect(big.headers['grpc-status']).toBe('8');
    // The fixture's `bytes` makes a buffer of the length asked: larger than the largest message.
    const program = encode({
      v: 1,
      session: 's',
      ops: [{ op: 'call', target: null, path: ['bytes'], args: [70_000] }],
    });
    const client = createModuleClient(address, { secret });
    try {
      await expect(client.invoke(program, { timeoutMs: 2_000 })).rejects.toMatchObject({
        code: 'RESOURCE_EXHAUSTED',
        message: expect.stringContaining('larger than the largest message'),
      });
      const after = decode(await client.invoke(addProgram, { timeoutMs: 2_000 })) as InvokeResponse;
      expect(after).toMatchObject({ ok: true, value: 5 });
    } finally {
      client.close();
    }
  });
});
