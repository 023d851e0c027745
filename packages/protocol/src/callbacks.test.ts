import { describe, expect, it } from 'vitest';
import { droppedOf, MAX_CALLBACK_ITEMS, parseCallbacksRequest } from './callbacks.js';
import { CallbackRef, decode, encode } from './codec.js';

const program = (op: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  v: 1,
  session: 's',
  ops: [{ op: 'callbacks', ...op }],
  ...extra,
});

describe('callbacks programs', () => {
  it('takes answers, releases, a wait and close, with defaults', () => {
    const answer = { request: 3, answer: new Uint8Array([0xc0]) };
    expect(parseCallbacksRequest(program({ answers: [answer], released: ['a'], wait: 100 }))).toEqual({
      session: 's',
      op: { op: 'callbacks', answers: [answer], released: ['a'], wait: 100 },
    });
    expect(parseCallbacksRequest(program({ close: true })).op).toEqual({
      op: 'callbacks',
      answers: [],
      released: [],
      wait: 0,
      close: true,
    });
  });

  it.each([
    [{ v: 2, session: 's', ops: [] }, /v must be 1/],
    [program({}, { session: '' }), /session must be a string/],
    [
      { v: 1, session: 's', ops: [{ op: 'call', target: null, path: [], args: [] }] },
      /takes only the callbacks operation/,
    ],
    [{ v: 1, session: 's', ops: [{ op: 'callbacks' }, { op: 'callbacks' }] }, /exactly one operation/],
    [program({ wait: 25_001 }), /wait must be an integer from 0 to 25000 ms/],
    [program({ wait: 1.5 }), /wait must be an integer/],
    [program({ answers: [{ request: 'x', answer: new Uint8Array() }] }), /each answer is/],
    [program({ answers: [{ request: 1, answer: 'not bytes' }] }), /each answer is/],
    [program({ released: ['x'.repeat(65)] }), /released must be an array/],
    [
      program({
        answers: Array.from({ length: 1025 }, (_, i) => ({ request: i, answer: new Uint8Array() })),
      }),
      /at most 1024/,
    ],
    [program({ close: 'yes' }), /close must be a boolean/],
  ])('refuses %j', (request, message) => {
    expect(() => parseCallbacksRequest(request)).toThrow(message);
  });

  it('carries callback references through the codec, and refuses malformed ones', () => {
    const back = decode(encode([new CallbackRef('id-1', 'f')])) as unknown[];
    expect(back[0]).toEqual(new CallbackRef('id-1', 'f'));
    expect(() => decode(Buffer.from('d4090092a0a0', 'hex'))).toThrow(/malformed callback reference/);
  });
});

describe('dropped stubs in an answer', () => {
  it('keeps the well-formed entries, at most the limit, and ignores the rest', () => {
    const good = { callback: 'a', binds: 2 };
    const answer = (dropped: unknown) => ({ server: 's', requests: [], dropped }) as never;
    expect(droppedOf({ server: 's', requests: [] })).toEqual([]);
    expect(droppedOf(answer('a'))).toEqual([]);
    expect(
      droppedOf(
        answer([
          good,
          null,
          'a',
          { callback: 'b', binds: 0 },
          { callback: 'c', binds: 1.5 },
          { callback: 1, binds: 1 },
        ]),
      ),
    ).toEqual([good]);
    expect(droppedOf(answer(Array(MAX_CALLBACK_ITEMS + 5).fill(good)))).toHaveLength(MAX_CALLBACK_ITEMS);
  });
});
