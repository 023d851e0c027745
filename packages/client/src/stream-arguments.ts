/**
 * Streams passed as arguments (INVOKE.md 3.6): a `ReadableStream`, Node `Readable` or any async
 * iterable among a call's arguments reaches the module as a `ReadableStream` it reads as the app
 * sends. Each stream gets a pipe on the module-server (one `pipe` request, which also fixes the
 * replica), the call goes with the pipe's reference in the stream's place, and the stream's chunks
 * follow in `push` requests while the call runs: those ready at once travel together (at most 64
 * chunks or about 1 MiB per push), and a push is answered only when the module has read enough (flow control), so the app
 * never reads further ahead than that. When the call ends, reading stops and the pipes are freed.
 */
import { isPlainObject } from '@splice-orc/protocol';
import { nodeOf, type ProxyNode, type RefHandle, type Step } from './remote-proxy.js';

/** Most chunks one push carries. */
const PUSH_CHUNKS = 64;
/** A push stops taking chunks once they hold this many bytes (a larger chunk goes alone). */
const PUSH_BYTES = 1024 * 1024;

/** About how many bytes a chunk takes on the wire (bytes and strings; other values count little). */
function sizeOf(chunk: unknown): number {
  if (ArrayBuffer.isView(chunk)) return chunk.byteLength;
  if (typeof chunk === 'string') return chunk.length * 3;
  return 16;
}

/** Whether a value is a stream argument: an async iterable that is not a remote proxy. */
export function isStreamArgument(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    !nodeOf(value) &&
    typeof (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function'
  );
}

/** The node with each stream argument replaced by what `replace` gives for it. */
export function replaceStreams(
  node: ProxyNode,
  replace: (stream: AsyncIterable<unknown>) => unknown,
): ProxyNode {
  const map = (value: unknown): unknown => {
    if (isStreamArgument(value)) return replace(value);
    if (Array.isArray(value)) return value.map(map);
    if (value !== null && typeof value === 'object' && isPlainObject(value))
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, map(v)]));
    return value;
  };
  const steps = node.steps.map(
    (step): Step => (step.kind === 'get' ? step : { ...step, args: step.args.map(map) }),
  );
  return { ...node, steps };
}

/** Sends a push and resolves with whether the module stopped reading. */
export type Push = (
  pipe: RefHandle,
  items: unknown[],
  end: boolean,
  error?: string,
) => Promise<{ cancelled: boolean }>;

/**
 * Reads `stream` and pushes its chunks into `pipe` until it ends, the module stops reading, or
 * `stopped` says the call is over. Never rejects: a failure ends the pump (the call reports it).
 */
export async function pump(
  stream: AsyncIterable<unknown>,
  pipe: RefHandle,
  push: Push,
  stopped: () => boolean,
): Promise<void> {
  const iterator = stream[Symbol.asyncIterator]();
  let waiting: Promise<IteratorResult<unknown>> | undefined;
  try {
    for (;;) {
      const items: unknown[] = [];
      let bytes = 0;
      let end = false;
      // The first chunk is waited for; after it, only chunks ready within this turn join the push.
      while (items.length < PUSH_CHUNKS && bytes < PUSH_BYTES) {
        const next = waiting ?? iterator.next();
        waiting = undefined;
        const step =
          items.length === 0
            ? await next
            : await Promise.race([
                next,
                new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined))),
              ]);
        if (step === undefined) {
          waiting = next;
          break;
        }
        if (step.done) {
          end = true;
          break;
        }
        items.push(step.value);
        bytes += sizeOf(step.value);
      }
      if (stopped()) break;
      const { cancelled } = await push(pipe, items, end);
      if (end) return;
      if (cancelled || stopped()) break;
    }
  } catch (error) {
    if (!stopped()) {
      const message = error instanceof Error ? error.message : String(error);
      await push(pipe, [], false, message.slice(0, 1_000)).catch(() => {});
    }
  }
  // The module stopped reading or the call is over: stop the source too.
  waiting?.catch(() => {});
  await iterator.return?.()?.catch?.(() => {});
}
