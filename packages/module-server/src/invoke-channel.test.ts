import { fileURLToPath } from 'node:url';
import { createInvokeChannel, decode, encode, type InvokeResponse, type Op } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModuleServer, type ModuleServer } from './server.js';

const secret = 'module-server-test-secret';

const calc = fileURLToPath(new URL('../../../test/fixtures/calc/index.js', import.meta.url));
let server: ModuleServer;

beforeAll(async () => {
  server = await createModuleServer({ moduleName: calc, secret, maxMessageBytes: 256 * 1024 });
});
afterAll(async () => {
  await server.close();
});

const program = (ops: Op[]) => encode({ v: 1, session: 'c', ops });
const add: Op[] = [{ op: 'call', target: null, path: ['add'], args: [2, 3] }];

describe('invoke channel (gRPC over node:http2) against the grpc-js module-server', () => {
  it('sends a program and receives the answer', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { secret });
    const answer = decode(
      (await channel.invoke(program(add), { timeoutMs: 2_000 })).payload,
    ) as InvokeResponse;
    expect(answer).toMatchObject({ ok: true, value: 5 });
    channel.close();
  });

  it('carries payloads whose length needs a multi-byte varint, both ways', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { secret });
    const big = new Float64Array(10_000).map((_, i) => i * 1.5);
    const ops: Op[] = [{ op: 'call', target: null, path: ['echo'], args: [big] }];
    const answer = decode((await channel.invoke(program(ops), { timeoutMs: 5_000 })).payload) as {
      value: Float64Array;
    };
    expect(answer.value).toStrictEqual(big);
    channel.close();
  });

  it('turns a gRPC error status into a SpliceError with its code and message', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { secret });
    const breakout: Op[] = [{ op: 'get', target: null, path: ['add', 'constructor'] }];
    await expect(channel.invoke(program(breakout), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      message: expect.stringContaining("access to 'constructor' is not allowed"),
    });
    await expect(channel.invoke(new Uint8Array([0x92, 1]), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    channel.close();
  });

  it('passes the deadline to the server and enforces it locally', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { secret });
    const hang: Op[] = [{ op: 'call', target: null, path: ['hang'], args: [] }];
    await expect(channel.invoke(program(hang), { timeoutMs: 150 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(decode((await channel.invoke(program(add), { timeoutMs: 2_000 })).payload)).toMatchObject({
      value: 5,
    });
    channel.close();
  });

  it('cancels a call on abort', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { secret });
    const controller = new AbortController();
    const slow: Op[] = [{ op: 'call', target: null, path: ['delayed'], args: [1, 5_000] }];
    const pending = channel.invoke(program(slow), { timeoutMs: 10_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
    channel.close();
  });

  it('refuses a response larger than its limit', async () => {
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`, { maxMessageBytes: 1024, secret });
    const bytes: Op[] = [{ op: 'call', target: null, path: ['bytes'], args: [100_000] }];
    await expect(channel.invoke(program(bytes), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
    });
    channel.close();
  });

  it('reports a refused connection as UNAVAILABLE, never delivered, and reconnects later', async () => {
    await using other = await createModuleServer({ moduleName: calc, secret });
    const port = other.port;
    const channel = createInvokeChannel(`127.0.0.1:${port}`, { secret });
    expect(decode((await channel.invoke(program(add), { timeoutMs: 2_000 })).payload)).toMatchObject({
      value: 5,
    });
    await other.close();
    await expect(channel.invoke(program(add), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      safeToResend: true,
      message: expect.stringMatching(/no connection established/),
    });
    await using again = await createModuleServer({ moduleName: calc, secret, port });
    expect(again.port).toBe(port);
    expect(decode((await channel.invoke(program(add), { timeoutMs: 2_000 })).payload)).toMatchObject({
      value: 5,
    });
    channel.close();
  });
});
