/**
 * A stream passed as an argument (INVOKE.md 3.6): the client opens a pipe (`pipe` operation, which
 * answers a reference to it), passes that reference where the stream goes, and sends its chunks with
 * `push` operations while the call runs. The module receives a web `ReadableStream` (async-iterable
 * in Node). Flow control: a `push` is answered once the chunks waiting to be read are fewer than the
 * high-water mark, so a client never gets further ahead of the module than that. Nothing of the
 * pipe is reachable through `get` or `call`: its state is in private fields.
 */
import { Code, SpliceError } from '@splice-orc/protocol';

/** Chunks a pipe holds before a push waits. */
export const PIPE_HIGH_WATER = 64;
/** How long a reader waits for the client's next push before the stream fails, ms. */
export const PIPE_IDLE_MS = 30_000;

/** What a push answers: whether the module stopped reading (the client then stops sending). */
export interface PushResult {
  cancelled: boolean;
}

export class Pipe {
  readonly #chunks: unknown[] = [];
  #ended = false;
  #failed: Error | undefined;
  #cancelled = false;
  /** Resolves a reader waiting for chunks. */
  #wake: (() => void) | undefined;
  /** Resolve pushes waiting for room. */
  #room: Array<() => void> = [];
  readonly #idleMs: number;
  readonly #readable: ReadableStream<unknown>;

  constructor(idleMs = PIPE_IDLE_MS) {
    this.#idleMs = idleMs;
    this.#readable = new ReadableStream<unknown>(
      {
        pull: (controller) => this.#pull(controller),
        cancel: () => {
          this.#cancelled = true;
          this.#chunks.length = 0;
          this.#freeRoom();
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** What the module receives where the pipe's reference is passed. */
  readable(): ReadableStream<unknown> {
    return this.#readable;
  }

  /** Ends the pipe for good (the call that read it is over): waiting and later pushes are answered cancelled. */
  cancel(): void {
    this.#cancelled = true;
    this.#chunks.length = 0;
    this.#failed ??= new Error('the call this stream argument was passed to is over');
    this.#wake?.();
    this.#freeRoom();
  }

  /** Adds chunks (and ends or fails the stream); resolves once there is room for more. */
  async push(items: unknown[], end: boolean, error: string | undefined): Promise<PushResult> {
    if (this.#ended || this.#failed) {
      if (this.#cancelled) return { cancelled: true };
      throw new SpliceError(Code.FAILED_PRECONDITION, 'this stream argument has already ended');
    }
    if (this.#cancelled) return { cancelled: true };
    this.#chunks.push(...items);
    if (error !== undefined) this.#failed = new Error(`the client's stream failed: ${error}`);
    if (end) this.#ended = true;
    this.#wake?.();
    while (!this.#cancelled && this.#chunks.length >= PIPE_HIGH_WATER) {
      await new Promise<void>((resolve) => this.#room.push(resolve));
    }
    return { cancelled: this.#cancelled };
  }

  async #pull(controller: ReadableStreamDefaultController<unknown>): Promise<void> {
    if (this.#chunks.length === 0 && !this.#ended && !this.#failed) {
      let timer: NodeJS.Timeout | undefined;
      const idle = await new Promise<boolean>((resolve) => {
        this.#wake = () => resolve(false);
        timer = setTimeout(() => resolve(true), this.#idleMs);
      });
      clearTimeout(timer);
      this.#wake = undefined;
      if (idle && this.#chunks.length === 0 && !this.#ended) {
        this.#failed ??= new Error(`the client sent nothing for this stream argument in ${this.#idleMs} ms`);
      }
    }
    if (this.#chunks.length > 0) {
      controller.enqueue(this.#chunks.shift());
      this.#freeRoom();
    } else if (this.#failed) controller.error(this.#failed);
    else if (this.#ended) controller.close();
  }

  #freeRoom(): void {
    if (!this.#cancelled && this.#chunks.length >= PIPE_HIGH_WATER) return;
    const waiting = this.#room;
    this.#room = [];
    for (const resolve of waiting) resolve();
  }
}
