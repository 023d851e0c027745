/**
 * `for await (const x of remote)`: a remote iterator, iterable, generator or stream read in windows.
 * Each `pull` operation (INVOKE.md 3.5) takes up to `window` items; the next window is asked for
 * while the app consumes the second half of the current one (read-ahead), never more than one pull
 * at a time, so at most two windows are held however fast the producer is (backpressure: the remote
 * iterator only advances when pulled). `break`, `return` or a throw in the loop closes the remote
 * iterator (its `finally` blocks run) and frees its reference. Every pull has the call's deadline.
 */
import type { Op, PullResult } from '@splice-orc/protocol';
import { compile } from './program-compiler.js';
import { nodeOf, type ProxyNode, type RefHandle } from './remote-proxy.js';

/** What an iteration needs from its session. */
export interface IterationHost {
  send(
    module: string,
    ops: Op[],
    options: { route?: string | undefined; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<unknown>;
  release(handle: RefHandle): Promise<void>;
}

/** Options of an iteration. */
export interface IterationOptions {
  /** Items per pull. Default 64. */
  window: number;
  /** Ask for the next window while the current one is consumed. Default true. */
  readAhead: boolean;
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** An async iterator over what `node` stands for. */
export class RemoteIterator implements AsyncIterableIterator<unknown> {
  readonly #host: IterationHost;
  readonly #node: ProxyNode;
  readonly #options: IterationOptions;
  #buffer: unknown[] = [];
  #next = 0;
  #done = false;
  #closed = false;
  /** The remote iterator, once known; `owned` when this iteration made it (and frees it). */
  #iterator: { handle: RefHandle; owned: boolean } | undefined;
  #pulling: Promise<void> | undefined;

  constructor(host: IterationHost, node: ProxyNode, options: IterationOptions) {
    this.#host = host;
    this.#node = node;
    this.#options = options;
    if (node.base && node.steps.length === 0) this.#iterator = { handle: node.base, owned: false };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<unknown>> {
    while (this.#next >= this.#buffer.length) {
      if (this.#done || this.#closed) return { done: true, value: undefined };
      this.#pulling ??= this.#pull();
      await this.#pulling;
    }
    const value = this.#buffer[this.#next++];
    const left = this.#buffer.length - this.#next;
    if (this.#options.readAhead && !this.#done && !this.#pulling && left <= this.#options.window / 2) {
      // Errors of a read-ahead surface when the loop reaches them, not as unhandled rejections.
      this.#pulling = this.#pull();
      this.#pulling.catch(() => {});
    }
    return { done: false, value };
  }

  async return(): Promise<IteratorResult<unknown>> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#pulling?.catch(() => {});
      const iterator = this.#iterator;
      if (iterator && !this.#done && !iterator.handle.released) {
        await this.#host
          .send(
            this.#node.module,
            [{ op: 'close', target: iterator.handle.ref }],
            this.#callOptions(iterator.handle),
          )
          .catch(() => {});
      }
      if (iterator?.owned) await this.#host.release(iterator.handle).catch(() => {});
    }
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<unknown>> {
    await this.return();
    throw error;
  }

  async #pull(): Promise<void> {
    try {
      const ops: Op[] = [];
      let route: string | undefined;
      if (this.#iterator) {
        ops.push({ op: 'pull', target: this.#iterator.handle.ref, max: this.#options.window });
        route = this.#iterator.handle.ref.server;
      } else {
        const servers = new Set<string>();
        const target = compile(this.#node, ops, servers, []);
        ops.push({ op: 'pull', target, max: this.#options.window });
        route = servers.values().next().value;
      }
      const result = (await this.#host.send(this.#node.module, ops, {
        route,
        timeoutMs: this.#options.timeoutMs,
        ...(this.#options.signal ? { signal: this.#options.signal } : {}),
      })) as PullResult;
      const made = result.iterator === undefined ? undefined : nodeOf(result.iterator)?.base;
      if (made) this.#iterator = { handle: made, owned: true };
      this.#buffer = this.#buffer.slice(this.#next).concat(result.items);
      this.#next = 0;
      if (result.done) {
        this.#done = true;
        if (this.#iterator?.owned) void this.#host.release(this.#iterator.handle).catch(() => {});
      }
    } finally {
      this.#pulling = undefined;
    }
  }

  #callOptions(handle: RefHandle) {
    return { route: handle.ref.server, timeoutMs: this.#options.timeoutMs };
  }
}
