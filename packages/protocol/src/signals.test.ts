import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { linkedSignal, withDeadline } from './signals.js';

const late = <T>(value: T, ms: number) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));
const timeoutError = () => new Error('too late');

describe('withDeadline', () => {
  it('settles as the work does, and leaves no listener on the caller signal', async () => {
    const controller = new AbortController();
    expect(
      await withDeadline(late('done', 5), {
        timeoutMs: 1_000,
        signal: controller.signal,
        onTimeout: timeoutError,
      }),
    ).toBe('done');
    await expect(
      withDeadline(Promise.reject(new Error('failed')), {
        signal: controller.signal,
        onTimeout: timeoutError,
      }),
    ).rejects.toThrow('failed');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects with onTimeout when the deadline passes, and with onAbort when the signal aborts', async () => {
    await expect(withDeadline(late('x', 200), { timeoutMs: 10, onTimeout: timeoutError })).rejects.toThrow(
      'too late',
    );
    const controller = new AbortController();
    const waiting = withDeadline(late('x', 200), {
      signal: controller.signal,
      onTimeout: timeoutError,
      onAbort: () => new Error('aborted'),
    });
    controller.abort();
    await expect(waiting).rejects.toThrow('aborted');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects at once for a signal aborted before', async () => {
    await expect(
      withDeadline(late('x', 10), { signal: AbortSignal.abort('gone'), onTimeout: timeoutError }),
    ).rejects.toBe('gone');
  });
});

describe('linkedSignal', () => {
  it('aborts when any input does, with its reason, and cleans up its listeners', () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkedSignal([a.signal, undefined, b.signal]);
    b.abort('b went');
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe('b went');
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0);
  });

  it('aborts after its timeout, and cleanup() leaves nothing behind', async () => {
    const a = new AbortController();
    const timed = linkedSignal([a.signal], 10);
    await late(null, 30);
    expect(timed.signal.aborted).toBe(true);
    const other = linkedSignal([a.signal], 1_000);
    other.cleanup();
    expect(getEventListeners(a.signal, 'abort')).toHaveLength(0);
  });
});
