/**
 * One deadline and abort toolkit for every side (cf. connect-es `protocol/signals.ts`): waiting for
 * work with a deadline and an AbortSignal, and linking signals, always removing what was added (a
 * timer, a listener on the caller's signal) once the wait is over.
 */

/** Options of {@link withDeadline}. */
export interface DeadlineOptions {
  /** Longest wait, ms; undefined or Infinity = none. */
  timeoutMs?: number | undefined;
  /** The caller's signal: aborting it ends the wait. */
  signal?: AbortSignal | undefined;
  /** The error the wait rejects with when the deadline passes. */
  onTimeout: () => Error;
  /** The error the wait rejects with when the signal aborts. Default: the signal's reason. */
  onAbort?: (reason: unknown) => unknown;
}

/**
 * Resolves or rejects as `work` does, unless the deadline passes or the signal aborts first. The
 * work itself goes on (cancel it through the signal where it can be); whatever happens, the timer
 * and the listener are gone when the returned promise settles.
 */
export function withDeadline<T>(work: Promise<T>, options: DeadlineOptions): Promise<T> {
  const { signal, timeoutMs } = options;
  const limited = timeoutMs !== undefined && Number.isFinite(timeoutMs);
  if (!signal && !limited) return work;
  const abortError = (reason: unknown) => (options.onAbort ? options.onAbort(reason) : reason);
  if (signal?.aborted) return Promise.reject(abortError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => finish(() => reject(abortError(signal?.reason)));
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    if (limited) timer = setTimeout(() => finish(() => reject(options.onTimeout())), Math.max(0, timeoutMs));
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => finish(() => resolve(value)),
      (error: unknown) => finish(() => reject(error)),
    );
  });
}

/**
 * A controller that aborts when any of `signals` does (with its reason) or after `timeoutMs`;
 * `cleanup()` removes its listeners and timer (call it when the operation is over).
 */
export function linkedSignal(
  signals: ReadonlyArray<AbortSignal | undefined>,
  timeoutMs?: number,
  timeoutReason: () => unknown = () => new DOMException('The operation timed out', 'TimeoutError'),
): { signal: AbortSignal; cleanup: () => void } {
  const controller = new AbortController();
  const listeners: Array<[AbortSignal, () => void]> = [];
  let timer: NodeJS.Timeout | undefined;
  const cleanup = () => {
    clearTimeout(timer);
    for (const [s, l] of listeners) s.removeEventListener('abort', l);
    listeners.length = 0;
  };
  for (const s of signals) {
    if (!s) continue;
    if (s.aborted) {
      controller.abort(s.reason);
      return { signal: controller.signal, cleanup };
    }
    const listener = () => {
      controller.abort(s.reason);
      cleanup();
    };
    s.addEventListener('abort', listener, { once: true });
    listeners.push([s, listener]);
  }
  if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
    timer = setTimeout(
      () => {
        controller.abort(timeoutReason());
        cleanup();
      },
      Math.max(0, timeoutMs),
    );
  }
  return { signal: controller.signal, cleanup };
}
