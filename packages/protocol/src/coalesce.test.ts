// The invoke channel's coalescing (the pod-manager's `server.coalesce_calls`): calls made in one turn
// of the event loop travel as one InvokeBatch, a lone call as a plain Invoke, and each call keeps its
// own answer, failure, deadline and abort. Against a real gRPC server on loopback that records what
// it was sent.
import { afterEach, describe, expect, it } from 'vitest';
import { createGrpcServer, type GrpcServer } from './grpc-server.js';
import { createInvokeChannel, type InvokeChannel } from './invoke-channel.js';
import { INVOKE_BATCH_PATH, INVOKE_PATH } from './proto.js';
import { BatchAnswerSpec, BatchRequestSpec, decodeMessage, encodeMessage, PayloadSpec } from './protobuf.js';

let server: GrpcServer | undefined;
let channel: InvokeChannel | undefined;
afterEach(async () => {
  channel?.close();
  await server?.close(100);
  server = channel = undefined;
});

/**
 * What a payload asks of the test server: `echo:x` answers x, `fail:x` fails that program with
 * FAILED_PRECONDITION, `slow:ms:x` answers after ms, `hang` never answers, `die` breaks the connection.
 */
async function start(): Promise<{ calls: Array<{ method: string; programs: number; timeouts: number[] }> }> {
  const calls: Array<{ method: string; programs: number; timeouts: number[] }> = [];
  const answer = (
    text: string,
    reply: (payload: Buffer | undefined, status?: number, message?: string) => void,
  ) => {
    const [kind, a, b] = text.split(':');
    if (kind === 'echo') reply(Buffer.from(a ?? ''));
    else if (kind === 'fail') reply(undefined, 9, `refused ${a}`);
    else if (kind === 'slow') setTimeout(() => reply(Buffer.from(b ?? '')), Number(a));
    // The server goes away with its connections (no grace): the call is lost mid-way.
    else if (kind === 'die') setTimeout(() => void server?.close(0), 50);
  };
  server = createGrpcServer({
    methods: {
      [INVOKE_PATH]: (call) => {
        calls.push({ method: 'Invoke', programs: 1, timeouts: [] });
        const text = (decodeMessage(PayloadSpec, call.request).payload as Buffer).toString();
        answer(text, (payload, status, message) => {
          if (status) return call.fail(status, message ?? '');
          call.write(encodeMessage(PayloadSpec, { payload }));
          call.end();
        });
      },
      [INVOKE_BATCH_PATH]: (call) => {
        const request = decodeMessage(BatchRequestSpec, call.request);
        const payloads = request.payloads as Buffer[];
        calls.push({
          method: 'InvokeBatch',
          programs: payloads.length,
          timeouts: request.timeouts_ms as number[],
        });
        let left = payloads.length;
        payloads.forEach((p, index) => {
          answer(p.toString(), (payload, status, message) => {
            call.write(encodeMessage(BatchAnswerSpec, { index, payload, status, message }));
            if (--left === 0) call.end();
          });
        });
      },
    },
  });
  const port = await server.listen('127.0.0.1', 0);
  channel = createInvokeChannel(`127.0.0.1:${port}`, { coalesce: true });
  return { calls };
}

const text = async (p: Promise<{ payload: Buffer }>) => (await p).payload.toString();
const call = (payload: string, timeoutMs = 2_000, signal?: AbortSignal) =>
  (channel as InvokeChannel).invoke(Buffer.from(payload), { timeoutMs, signal });

describe('coalescing Invoke calls', () => {
  it('sends a lone call as a plain Invoke and calls of one turn as one InvokeBatch, each with its answer', async () => {
    const { calls } = await start();
    expect(await text(call('echo:one'))).toBe('one');
    const answers = await Promise.all(
      ['a', 'b', 'c', 'd'].map((x) => text(call(`echo:${x}`, 1_000 + x.charCodeAt(0)))),
    );
    expect(answers).toEqual(['a', 'b', 'c', 'd']);
    expect(calls).toEqual([
      { method: 'Invoke', programs: 1, timeouts: [] },
      { method: 'InvokeBatch', programs: 4, timeouts: [1097, 1098, 1099, 1100] },
    ]);
  });

  it('fails only the call whose program failed, with its status and message', async () => {
    await start();
    const results = await Promise.allSettled([call('echo:x'), call('fail:y'), call('echo:z')]);
    expect(results[0]).toMatchObject({ status: 'fulfilled' });
    expect(results[1]).toMatchObject({
      status: 'rejected',
      reason: { code: 'FAILED_PRECONDITION', message: 'refused y' },
    });
    expect(results[2]).toMatchObject({ status: 'fulfilled' });
  });

  it('ends a call at its own deadline while the others of its batch are answered', async () => {
    const { calls } = await start();
    const started = Date.now();
    const [quick, hung] = await Promise.allSettled([call('slow:200:late'), call('hang', 100)]);
    expect(hung).toMatchObject({ status: 'rejected', reason: { code: 'DEADLINE_EXCEEDED' } });
    expect(quick).toMatchObject({ status: 'fulfilled' });
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(calls[0]?.method).toBe('InvokeBatch');
  });

  it('cancels an aborted call alone; one aborted before it left is never sent', async () => {
    const { calls } = await start();
    const early = new AbortController();
    const late = new AbortController();
    const pending = [
      call('echo:kept'),
      call('echo:never', 2_000, early.signal),
      call('slow:300:dropped', 2_000, late.signal),
    ];
    early.abort();
    setTimeout(() => late.abort(), 50);
    const [kept, never, dropped] = await Promise.allSettled(pending);
    expect(kept).toMatchObject({ status: 'fulfilled' });
    expect(never).toMatchObject({ status: 'rejected', reason: { code: 'CANCELLED' } });
    expect(dropped).toMatchObject({ status: 'rejected', reason: { code: 'CANCELLED' } });
    expect(calls).toEqual([{ method: 'InvokeBatch', programs: 2, timeouts: [2_000, 2_000] }]);
  });

  it('fails the unanswered calls of a batch whose connection breaks, as calls that may have run', async () => {
    await start();
    const [answered, lost] = await Promise.allSettled([call('echo:first'), call('die')]);
    expect(answered).toMatchObject({ status: 'fulfilled' });
    expect(lost).toMatchObject({ status: 'rejected', reason: { code: 'UNAVAILABLE', safeToResend: false } });
  });
});
