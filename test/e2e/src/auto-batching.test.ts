/**
 * Auto-batching end to end: calls made while a request to the module is in flight travel together,
 * and every per-call guarantee holds inside a batch (own result or error, own deadline, abort,
 * one chain's order, release of references, no resend of what may have run).
 */
import * as diagnostics from 'node:diagnostics_channel';
import { connect, type SpliceClient } from '@splice-orc/client';
import { BATCH_TYPE, encode, encodeBatchRequest, PROGRAM_VERSION } from '@splice-orc/protocol';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eventually, fixture, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let client: SpliceClient;
let calc: any;

/** Invoke requests this process sent to the pod-manager, with their content types. */
const sent: Array<{ path: string; type: string; headers: string }> = [];
const onRequest = (message: unknown) => {
  const { request } = message as { request: { path: string; headers: unknown } };
  if (!request.path.includes('/modules/')) return;
  const headers = Array.isArray(request.headers) ? request.headers.join('\n') : String(request.headers);
  const type = /content-type(?::\s*|\n)([^\r\n]+)/i.exec(headers)?.[1] ?? '';
  sent.push({ path: request.path, type, headers });
};

beforeAll(async () => {
  diagnostics.subscribe('undici:request:create', onRequest);
  pm = await startPodManager({ calc: { package: fixture('calc') } }, { max_payload_bytes: 64 * 1024 });
  client = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
  calc = client.module('calc');
  expect(await calc.add(1, 1)).toBe(2);
});
afterAll(async () => {
  diagnostics.unsubscribe('undici:request:create', onRequest);
  await client.close();
  await pm[Symbol.asyncDispose]();
});
beforeEach(() => {
  sent.length = 0;
});

/** Sends a chain now (a chain is sent when first awaited or then'd). */
const start = (chain: PromiseLike<any>): Promise<any> => Promise.resolve(chain.then((v) => v));
/** Lets the calls started so far leave (the flush of waiting calls runs in setImmediate). */
const settle = () => new Promise((r) => setImmediate(r));

const batches = () => sent.filter((r) => r.type.startsWith(BATCH_TYPE));
const singles = () => sent.filter((r) => r.type.startsWith('application/msgpack'));

describe('auto-batching', () => {
  it('sends a lone call at once, on its own', async () => {
    expect(await calc.add(2, 3)).toBe(5);
    expect(singles()).toHaveLength(1);
    expect(batches()).toHaveLength(0);
  });

  it('sends calls made while one is in flight as one request; each gets its own result or error', async () => {
    const first = start(calc.delayed('first', 300));
    await settle();
    const rest = [
      calc.add(1, 2),
      calc.fail('no'),
      calc.echo({ a: [1, 2] }),
      calc.failLater('later'),
      calc.add(5, 5),
    ].map(start);
    const outcomes = await Promise.allSettled([first, ...rest]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason.cause.message))).toEqual([
      'first',
      3,
      'no',
      { a: [1, 2] },
      'later',
      10,
    ]);
    const failed = outcomes[2] as PromiseRejectedResult;
    expect(failed.reason).toMatchObject({
      name: 'RemoteError',
      remoteName: 'RangeError',
      remoteCode: 'E_CALC',
    });
    expect(singles()).toHaveLength(1);
    expect(batches()).toHaveLength(1);
  });

  it('answers each call of a batch as soon as it is ready: a slow one holds none back', async () => {
    const hold = start(calc.delayed('hold', 100));
    await settle();
    const order: string[] = [];
    const slow = start(calc.delayed('slow', 1500)).then((v: string) => order.push(v));
    const fast = start(calc.delayed('fast', 10)).then((v: string) => order.push(v));
    await Promise.all([hold, slow, fast]);
    expect(order).toEqual(['fast', 'slow']);
    expect(batches()).toHaveLength(1);
  });

  it('keeps each call’s own deadline inside a batch', async () => {
    const hold = start(calc.delayed('hold', 200));
    await settle();
    const started = Date.now();
    const hung = client.call(calc.hang(), { timeoutMs: 400 });
    const ok = start(calc.delayed('ok', 50));
    await expect(hung).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const waited = Date.now() - started;
    expect(await ok).toBe('ok');
    await hold;
    // The hung call ended at its own deadline, not at the batch's (20 s): a bound, not a timing.
    expect(waited).toBeLessThan(10_000);
    expect(batches()).toHaveLength(1);
  });

  it('cancels an aborted call: one still waiting is never sent, one in a batch rejects at once', async () => {
    const c = await calc.counter(0);
    const first = start(c.increment());
    await settle();
    const controller = new AbortController();
    const aborted = client.call(c.increment(), { signal: controller.signal });
    const kept = start(c.increment());
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await first).toBe(1);
    expect(await kept).toBe(2);
    // The aborted call never reached the module.
    expect(await c.increment()).toBe(3);

    const hold = start(calc.delayed('hold', 100));
    await settle();
    const late = new AbortController();
    const inBatch = client.call(calc.delayed('never seen', 1000), { signal: late.signal });
    const other = start(calc.delayed('other', 300));
    await new Promise((r) => setTimeout(r, 150));
    late.abort();
    await expect(inBatch).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await other).toBe('other');
    await hold;
  });

  it('runs pipelined chains whole and in order, and releases references made in batches', async () => {
    const objects = async () => (await http(`${pm.url}/modules/calc`)).body.server.objects as number;
    const before = await objects();
    const hold = start(calc.delayed('hold', 100));
    await settle();
    const dets = [1, 2, 3].map((k) =>
      start(
        calc.det(
          calc
            .matrix([
              [k, 0],
              [0, k],
            ])
            .scale(2),
        ),
      ),
    );
    const made = [1, 2, 3].map((k) => start(calc.matrix([[k]])));
    expect(await Promise.all(dets)).toEqual([4, 16, 36]);
    const refs = await Promise.all(made);
    await hold;
    expect(batches().length).toBeGreaterThanOrEqual(1);
    expect(await refs[2].get(0, 0)).toBe(3);
    expect(await objects()).toBe(before + 3);
    await client.release(...refs);
    // Releases ride on the next call to the replica, or go on their own at once.
    await eventually(async () => (await objects()) === before, 10_000, 'references released');
  });

  it('fails every unanswered call of a batch whose module-server dies, and resends none', async () => {
    const pid = (await calc.pid()) as number;
    const lone = start(calc.delayed('lone', 10));
    await settle();
    const answered = start(calc.delayed('answered', 10));
    const doomed = [
      start(calc.delayed('doomed 1', 5000)),
      start(calc.hang()),
      start(calc.delayed('doomed 2', 5000)),
    ];
    expect(await lone).toBe('lone');
    expect(await answered).toBe('answered');
    process.kill(pid, 'SIGKILL');
    const outcomes = await Promise.allSettled(doomed);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason;
      expect(reason.message).toMatch(/batch failed before this call was answered/);
      expect(reason.safeToResend).toBe(false);
    }
    // None was sent again: a restarted server answers new calls, and nothing resent ran there.
    expect(await calc.add(1, 1)).toBe(2);
    expect(await calc.pid()).not.toBe(pid);
    expect(batches()).toHaveLength(1);
  });

  it('sends a batch larger than the pod-manager takes as single calls instead', async () => {
    const big = 'x'.repeat(30_000);
    const hold = start(calc.delayed('hold', 200));
    await settle();
    const echoes = [1, 2, 3, 4].map((i) => start(calc.echo(`${i}${big}`)));
    const values = await Promise.all(echoes);
    expect(values.map((v: string) => v.length)).toEqual([30_001, 30_001, 30_001, 30_001]);
    await hold;
    expect(batches().length).toBeGreaterThanOrEqual(1);
    expect(singles().length).toBeGreaterThanOrEqual(5);
  });

  it('reads every batch answer to its end: connections are kept, not closed after each batch', async () => {
    const fresh = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
    let connects = 0;
    const onConnect = () => connects++;
    diagnostics.subscribe('undici:client:connected', onConnect);
    try {
      const m = fresh.module('calc');
      for (let round = 0; round < 20; round++) {
        expect(await Promise.all([1, 2, 3, 4].map((i) => m.add(i, round)))).toEqual(
          [1, 2, 3, 4].map((i) => i + round),
        );
      }
      expect(batches().length).toBeGreaterThanOrEqual(20);
      // One connection for each request that can be in flight at once (a lone call and a batch).
      expect(connects).toBeLessThanOrEqual(3);
    } finally {
      diagnostics.unsubscribe('undici:client:connected', onConnect);
      await fresh.close();
    }
  });

  it('is off with connect({ batch: false }): every call is a request of its own', async () => {
    const plain = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0, batch: false });
    try {
      const m = plain.module('calc');
      expect(await Promise.all([1, 2, 3, 4].map((i) => m.add(i, i)))).toEqual([2, 4, 6, 8]);
      expect(batches()).toHaveLength(0);
      expect(singles()).toHaveLength(4);
    } finally {
      await plain.close();
    }
  });

  it('refuses malformed batches with a clear error', async () => {
    const post = (body: Uint8Array) =>
      fetch(`${pm.url}/modules/calc/invoke`, {
        method: 'POST',
        headers: { 'content-type': BATCH_TYPE },
        body,
        signal: AbortSignal.timeout(10_000),
      });
    for (const [body, message] of [
      [Buffer.from([0x0a, 0x7f, 0x01]), /not an InvokeBatchRequest/],
      [encodeBatchRequest({ payloads: [], timeouts_ms: [] }), /holds no program/],
      [
        encodeBatchRequest({ payloads: Array(1025).fill(Buffer.from([0x90])), timeouts_ms: [] }),
        /at most 1024/,
      ],
    ] as const) {
      const response = await post(body);
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({
        error: { code: 'BAD_REQUEST', message: expect.stringMatching(message) },
      });
    }
    // A program that is not one fails alone, with its own status, in a batch that otherwise works.
    const good = encode({
      v: PROGRAM_VERSION,
      session: 's',
      ops: [{ op: 'call', target: 'root', path: ['add'], args: [2, 2] }],
    });
    const response = await post(
      encodeBatchRequest({ payloads: [Buffer.from([0xc1]), good], timeouts_ms: [] }),
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(BATCH_TYPE);
    expect(Buffer.from(await response.arrayBuffer()).length).toBeGreaterThan(10);
  });

  it('learns a module’s placement from its first call, without a request of its own', async () => {
    const fresh = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
    try {
      expect(await fresh.module('calc').add(20, 22)).toBe(42);
      expect(sent.map((r) => r.path)).toEqual(['/modules/calc/invoke']);
      expect(sent[0]?.headers).toMatch(/x-splice-if-remote/);
      expect(await fresh.module('calc').add(1, 2)).toBe(3);
      expect(sent[1]?.headers).not.toMatch(/x-splice-if-remote/);
    } finally {
      await fresh.close();
    }
  });
});
