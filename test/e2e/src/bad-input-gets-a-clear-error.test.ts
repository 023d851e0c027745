/**
 * Regressions from outside tools: input that crashed a route (500) or came back as if the module
 * had thrown now gets a 400 that names the problem, and references cannot be hoarded.
 */
import { decode, encode, type InvokeResponse, type Op, Slot } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;

beforeAll(async () => {
  pm = await startPodManager(
    { calc: { package: fixture('calc') } },
    { max_objects_per_session: 30, max_objects_per_server: 50, max_sessions_per_server: 3 },
  );
  await pm.client.module<any>('calc').add(1, 1);
});
afterAll(async () => {
  await pm[Symbol.asyncDispose]();
});

const deepJson = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;
const deepMsgpack = (levels: number) => Buffer.concat([Buffer.alloc(levels - 1, 0x91), Buffer.from([0x90])]);

async function invokeBytes(body: Uint8Array, headers: Record<string, string> = {}) {
  const response = await fetch(`${pm.url}/modules/calc/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', ...headers },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return { status: response.status, bytes };
}

describe('deep input', () => {
  it('refuses a config body nested 10 000 deep with 400 naming the depth limit', async () => {
    const answer = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: `{"dependency": ${deepJson(10_000)}}`,
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/deeper than 256 levels/),
    });
  });

  it('refuses JSON invoke arguments nested 10 000 deep with 400', async () => {
    const answer = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: `{"path": "echo", "args": [${deepJson(10_000)}]}`,
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error.message).toMatch(/deeper than 256 levels/);
  });

  it('refuses msgpack arguments nested 10 000 deep with 400 INVALID_ARGUMENT, not as a module throw', async () => {
    const marker = 'DEEP-VALUE-MARKER';
    const program = Buffer.from(
      encode({ v: 1, session: 'deep', ops: [{ op: 'call', target: null, path: ['echo'], args: [marker] }] }),
    );
    const packedMarker = Buffer.from(encode(marker));
    const at = program.indexOf(packedMarker);
    const body = Buffer.concat([
      program.subarray(0, at),
      deepMsgpack(10_000),
      program.subarray(at + packedMarker.length),
    ]);
    const answer = await invokeBytes(body);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.bytes.toString()).error).toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/deeper than 256 levels/),
    });
  });
});

describe('JSON invoke bodies', () => {
  it.each([
    [{ path: 123 }, /path/],
    [{ path: 'add', args: 'x' }, /args/],
    [{ path: 'add', args: [1, 2], op: 'run' }, /op/],
    [{ path: 'add', extra: true }, /extra|additional/],
  ])('refuses %j with 400 instead of coercing it', async (body, field) => {
    const answer = await http(`${pm.url}/modules/calc/invoke`, { method: 'POST', body });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(field) });
  });

  it('takes the op the README documents', async () => {
    const get = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: { path: 'version', op: 'get' },
    });
    expect(get).toMatchObject({ status: 200, body: { value: '1.0.0' } });
    const call = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: { path: ['add'], args: [2, 3], op: 'call' },
    });
    expect(call).toMatchObject({ status: 200, body: { value: 5 } });
  });
});

describe('reference hoarding', () => {
  const makeRefs = async (session: string, count: number) => {
    // `count` matrices, answered as one array: one reference each.
    const ops: Op[] = Array.from({ length: count }, () => ({
      op: 'call',
      target: null,
      path: ['matrix'],
      args: [[[1]]],
    }));
    ops.push({ op: 'call', target: null, path: ['echo'], args: [ops.map((_, i) => new Slot(i))] });
    const { status, bytes } = await invokeBytes(encode({ v: 1, session, ops }));
    return {
      status,
      body: status === 200 ? (decode(bytes) as InvokeResponse) : JSON.parse(bytes.toString()),
    };
  };

  it('refuses references past the per-session and per-server limits with 429 RESOURCE_EXHAUSTED', async () => {
    const perSession = await makeRefs('hoarder-1', 31);
    expect(perSession.status).toBe(429);
    expect(perSession.body.error).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: expect.stringMatching(/per-session limit/),
    });
    expect((await makeRefs('hoarder-1', 30)).status).toBe(200);
    const perServer = await makeRefs('hoarder-2', 30);
    expect(perServer.status).toBe(429);
    expect(perServer.body.error.message).toMatch(/over all sessions/);
    // The refused answer kept none of the references it had made: 20 more fit.
    expect((await makeRefs('hoarder-2', 19)).status).toBe(200);
    // Three sessions now (the client's own holds nothing): a new one takes the empty one's place...
    expect((await makeRefs('hoarder-3', 1)).status).toBe(200);
    const stats = (await http(`${pm.url}/modules/calc`)).body.server;
    expect(stats).toMatchObject({ sessions: 3, objects: 50 });
    // ...and with every session holding references, one more is refused.
    const sessions = await makeRefs('hoarder-4', 1);
    expect(sessions.status).toBe(429);
    expect(sessions.body.error.message).toMatch(/3 client sessions/);
  });
});
