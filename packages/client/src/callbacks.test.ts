/**
 * The client's side of callbacks against a server that sends what it likes (a hostile module can
 * make its server ask for anything): only functions passed to that module on that replica, and not
 * released, are ever run; answers carry the function's outcome.
 */
import {
  type CallbackAnswer,
  type CallbackOutcome,
  CallbackRef,
  decode,
  encode,
  PROGRAM_VERSION,
} from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import { CallbackChannel, type ChannelHost } from './callbacks.js';

interface Sent {
  route: string | undefined;
  answers: CallbackAnswer[];
  released: string[];
}

/** A host whose server answers the first exchange with `requests`, then nothing. */
function hostileHost(requests: Array<{ request: number; callback: string; args: unknown[] }>) {
  const sent: Sent[] = [];
  let first = true;
  const host: ChannelHost = {
    session: 'session-1',
    exchange: async (_module, route, body) => {
      // A network round trip, never an answer within the same turn.
      await new Promise((resolve) => setTimeout(resolve, 2));
      const op = (decode(body) as { ops: Array<{ answers: CallbackAnswer[]; released: string[] }> }).ops[0]!;
      sent.push({ route, answers: op.answers, released: op.released });
      const value = {
        server: 'srv-a',
        requests: first ? requests.map((r) => ({ ...r, args: encode(r.args) })) : [],
      };
      first = false;
      return encode({ v: PROGRAM_VERSION, ok: true, value, lease: 60_000 });
    },
    decodeValue: (_module, bytes) => decode(bytes),
    encodeValue: (_module, value) => encode(value),
  };
  return { host, sent };
}

const outcomes = (sent: Sent[]) =>
  sent.flatMap((s) =>
    s.answers.map((a) => ({ request: a.request, ...(decode(a.answer) as CallbackOutcome) })),
  );

describe('callback channel', () => {
  it('runs only functions passed to it, and answers anything else with an error', async () => {
    const calls: unknown[] = [];
    const passed = (x: unknown) => {
      calls.push(x);
      return 'ran';
    };
    const { host, sent } = hostileHost([
      { request: 1, callback: 'passed-id', args: [1] },
      { request: 2, callback: 'guessed-id', args: [2] },
      { request: 3, callback: 'toString', args: [] },
      { request: 4, callback: '__proto__', args: [] },
    ]);
    const channel = new CallbackChannel('calc', 'srv-a', host, () => {});
    channel.add(new CallbackRef('passed-id', 'passed'), passed);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await channel.close();
    expect(calls).toEqual([1]);
    const answered = outcomes(sent);
    expect(answered.find((a) => a.request === 1)).toMatchObject({ ok: true, value: 'ran' });
    for (const request of [2, 3, 4]) {
      const answer = answered.find((a) => a.request === request) as { ok: false; error: Error };
      expect(answer.ok).toBe(false);
      expect(answer.error.message).toBe('this callback was released by the app');
    }
    expect(sent.every((s) => s.route === 'srv-a')).toBe(true);
  });

  it('does not run a function once it is released, and tells the server', async () => {
    const calls: unknown[] = [];
    const { host, sent } = hostileHost([{ request: 9, callback: 'id-1', args: ['late'] }]);
    const channel = new CallbackChannel('calc', 'srv-a', host, () => {});
    const fn = (x: unknown) => calls.push(x);
    channel.add(new CallbackRef('id-1', 'fn'), fn);
    expect(channel.release('id-1')).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await channel.close();
    expect(calls).toEqual([]);
    expect(sent.some((s) => s.released.includes('id-1'))).toBe(true);
  });
});

describe('callbacks the server dropped', () => {
  /** A host whose server answers its exchanges with these values of `dropped`, then none. */
  function droppingHost(answers: unknown[]) {
    const waits: number[] = [];
    const host: ChannelHost = {
      session: 'session-1',
      exchange: async (_module, _route, body) => {
        await new Promise((resolve) => setTimeout(resolve, 2));
        waits.push((decode(body) as { ops: Array<{ wait: number }> }).ops[0]!.wait);
        const dropped = answers.shift();
        const value = { server: 'srv-a', requests: [], ...(dropped === undefined ? {} : { dropped }) };
        return encode({ v: PROGRAM_VERSION, ok: true, value, lease: 60_000 });
      },
      decodeValue: (_module, bytes) => decode(bytes),
      encodeValue: (_module, value) => encode(value),
    };
    return { host, waits };
  }

  it('forgets a function once every send of it was bound and dropped, and stops polling', async () => {
    const { host, waits } = droppingHost([
      [
        { callback: 'a', binds: 1 },
        // b was sent twice: one call of it is still on its way and will bind it again.
        { callback: 'b', binds: 1 },
        // What a hostile or broken server may send is ignored.
        { callback: 'c', binds: 0 },
        { callback: 7, binds: 1 },
        null,
      ],
      [{ callback: 'b', binds: 1 }],
    ]);
    const channel = new CallbackChannel('calc', 'srv-a', host, () => {});
    channel.add(new CallbackRef('a', 'a'), () => 1);
    channel.add(new CallbackRef('b', 'b'), () => 2);
    channel.add(new CallbackRef('b', 'b'), () => 2);
    channel.add(new CallbackRef('c', 'c'), () => 3);
    expect(channel.live).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(channel.live).toBe(1);
    // c is left: the channel still waits for requests.
    expect(waits.at(-1)).toBeGreaterThan(0);
    expect(channel.release('c')).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const exchanges = waits.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Nothing live: no exchange waits any more.
    expect(waits.length).toBe(exchanges);
    expect(channel.live).toBe(0);
    await channel.close();
  });
});
