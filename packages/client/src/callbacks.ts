/**
 * Callbacks (INVOKE.md 3.7): functions of the app passed to a module. Each function gets an id
 * (random, the same each time the same function is passed) and lives in a *channel*: one per module
 * and module-server replica, since the stub the module calls lives on that replica. A channel
 * collects the replica's callback requests with `callbacks` exchanges through the pod-manager, runs
 * the app's function and sends its outcome in the next exchange.
 *
 * While it has live callbacks, the channel keeps one exchange waiting on the server (a long poll),
 * so a callback costs one round trip whenever the module calls it: during the call that passed it
 * or later (event handlers, progress). Its connections never keep the process alive (a script that
 * is done exits without `close()`), and when the app's process dies the server sees the waiting
 * exchange go and fails what waits for the app at once.
 *
 * A callback lives until the app releases it, the session ends, or the server says module code no
 * longer holds it (`dropped`: its garbage collector took the stub), so a loop that passes a fresh
 * function on each call does not pile functions up here.
 *
 * Security: a request is served only for a function the app passed to that module on that replica
 * and has not released; the module cannot name anything else in the app.
 */
import { randomBytes } from 'node:crypto';
import {
  type CallbackAnswer,
  type CallbackOutcome,
  CallbackRef,
  type CallbackRequest,
  type CallbacksResult,
  Code,
  type DroppedCallback,
  decode,
  droppedOf,
  encode,
  type InvokeResponse,
  MAX_CALLBACK_ITEMS,
  PROGRAM_VERSION,
  SpliceError,
} from '@splice-orc/protocol';

/** How long an exchange waits on the server for a request while calls that passed callbacks run. */
const LONG_POLL_MS = 20_000;
/** Margin over the wait for the exchange's own deadline. */
const EXCHANGE_MARGIN_MS = 10_000;
/** How long `close()` waits for the server to take a channel's end (it gives up quietly after). */
const CLOSE_TIMEOUT_MS = 2_000;
/** Most callbacks one session may have live on one replica. */
export const MAX_LIVE_CALLBACKS = 100_000;

/** What a channel needs from the session. */
export interface ChannelHost {
  readonly session: string;
  /**
   * Sends a `callbacks` program to the module (to `route`, or any replica) and returns the encoded
   * answer; a `longPoll` goes on connections that never keep the process alive.
   */
  exchange(
    module: string,
    route: string | undefined,
    body: Uint8Array,
    timeoutMs: number,
    longPoll: boolean,
  ): Promise<Uint8Array>;
  /** Decodes a value the module sent (its references become proxies of the module). */
  decodeValue(module: string, bytes: Uint8Array): unknown;
  /** Encodes a value for the module (proxies become references, functions callbacks of `channel`). */
  encodeValue(module: string, value: unknown, channel: CallbackChannel): Uint8Array;
}

/** The callbacks of one session on one replica of one module. */
export class CallbackChannel {
  readonly #fns = new Map<string, (...args: unknown[]) => unknown>();
  /** How many times each live id was sent to the server since the server's last notice of it. */
  readonly #sent = new Map<string, number>();
  #answers: CallbackAnswer[] = [];
  #released: string[] = [];
  #waiting = false;
  #flushing = false;
  /** Requests are being run: their answers wait for the exchange that follows. */
  #running = false;
  #closed = false;
  #failures = 0;

  constructor(
    readonly module: string,
    readonly server: string,
    readonly host: ChannelHost,
    /** Called when the replica is gone: every callback of the channel died with its stubs. */
    readonly onGone: (channel: CallbackChannel) => void,
  ) {}

  /** Makes `fn` callable by the module on this replica under `ref`'s id; the long poll starts. */
  add(ref: CallbackRef, fn: (...args: unknown[]) => unknown): void {
    if (this.#closed)
      throw new SpliceError(Code.UNAVAILABLE, `the replica ${this.server} of ${this.module} is gone`);
    if (!this.#fns.has(ref.id) && this.#fns.size >= MAX_LIVE_CALLBACKS) {
      throw new SpliceError(
        Code.RESOURCE_EXHAUSTED,
        `this session has ${MAX_LIVE_CALLBACKS} live callbacks on ${this.module}: release some with orc.release(fn)`,
      );
    }
    this.#fns.set(ref.id, fn);
    this.#sent.set(ref.id, (this.#sent.get(ref.id) ?? 0) + 1);
    this.#pump();
  }

  /**
   * The server's stubs of these callbacks were collected: each notice covers `binds` sends of the
   * id; a function none of whose sends is left (no call on its way binds it again) is forgotten.
   */
  #drop(items: DroppedCallback[]): void {
    for (const { callback, binds } of items) {
      const left = (this.#sent.get(callback) ?? 0) - binds;
      if (left > 0) {
        this.#sent.set(callback, left);
      } else {
        this.#sent.delete(callback);
        this.#fns.delete(callback);
      }
    }
  }

  /** Forgets a callback: later calls of it fail in the module. Returns whether it was live here. */
  release(id: string): boolean {
    if (!this.#fns.delete(id)) return false;
    this.#sent.delete(id);
    this.#released.push(id);
    this.#pump();
    return true;
  }

  /** Tells the server the app is done (its waiting requests fail), and stops. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const answers = this.#answers.splice(0);
    await this.#send({ answers, released: [], wait: 0, close: true }, 0, CLOSE_TIMEOUT_MS).catch(() => {});
  }

  get live(): number {
    return this.#fns.size;
  }

  /**
   * Keeps exchanges going: one long poll while callbacks live (it carries the answers ready when it
   * leaves); answers that become ready while it waits go at once in an exchange of their own, which
   * also ends the waiting one (the server answers a session's waiting exchange when a newer one
   * arrives), after which a new one waits.
   */
  #pump(): void {
    if (this.#closed || this.#running) return;
    const work = this.#answers.length > 0 || this.#released.length > 0;
    if (!this.#waiting && (this.#fns.size > 0 || work)) {
      this.#waiting = true;
      this.#exchange(this.#fns.size > 0 ? LONG_POLL_MS : 0, () => {
        this.#waiting = false;
      });
      return;
    }
    if (work && !this.#flushing) {
      this.#flushing = true;
      this.#exchange(0, () => {
        this.#flushing = false;
      });
    }
  }

  /**
   * One exchange: sends the answers and releases ready now, then (once `done` has updated the
   * state) runs the requests it brought, all before the next exchange leaves: the answers of
   * synchronous functions ride on it.
   */
  #exchange(wait: number, done: () => void): void {
    const answers = this.#answers.splice(0, MAX_CALLBACK_ITEMS);
    const released = this.#released.splice(0, MAX_CALLBACK_ITEMS);
    this.#send({ answers, released, wait }, wait).then(
      (result) => {
        this.#failures = 0;
        done();
        this.#drop(droppedOf(result));
        this.#running = true;
        try {
          for (const request of result.requests) this.#run(request);
        } finally {
          this.#running = false;
        }
        this.#pump();
      },
      (error: unknown) => {
        if (isGone(error)) {
          done();
          this.#closed = true;
          this.#fns.clear();
          this.#sent.clear();
          this.onGone(this);
          return;
        }
        // Not delivered: they go with the next exchange, after a pause that grows with failures.
        this.#answers.unshift(...answers);
        this.#released.unshift(...released);
        this.#failures++;
        const pause = Math.min(5_000, 100 * 2 ** this.#failures);
        setTimeout(() => {
          done();
          this.#pump();
        }, pause).unref();
      },
    );
  }

  async #send(
    op: { answers: CallbackAnswer[]; released: string[]; wait: number; close?: boolean },
    wait: number,
    timeoutMs = wait + EXCHANGE_MARGIN_MS,
  ): Promise<CallbacksResult> {
    const body = encode({
      v: PROGRAM_VERSION,
      session: this.host.session,
      ops: [{ op: 'callbacks', ...op }],
    });
    const bytes = await this.host.exchange(this.module, this.server, body, timeoutMs, wait > 0);
    const response = decode(bytes) as InvokeResponse;
    if (!response.ok)
      throw new SpliceError(Code.INTERNAL, `callbacks exchange failed: ${response.error.message}`);
    return response.value as CallbacksResult;
  }

  /** Runs the app's function for a request; its outcome goes with the next exchange. */
  #run({ request, callback, args }: CallbackRequest): void {
    const fn = this.#fns.get(callback);
    if (!fn) {
      this.#answer(request, { ok: false, error: new Error('this callback was released by the app') });
      return;
    }
    let result: unknown;
    try {
      const values = this.host.decodeValue(this.module, args);
      result = fn(...(Array.isArray(values) ? values : []));
    } catch (error) {
      this.#answer(request, { ok: false, error: asError(error) });
      return;
    }
    if (isPromiseLike(result)) {
      this.#answer(request, { pending: true });
      // `settled`: the outcome of a promise, which the module receives as one even if this
      // answer overtakes the `pending` (they may leave in two exchanges).
      Promise.resolve(result).then(
        (value) => this.#answer(request, { ok: true, value, settled: true }),
        (error: unknown) => this.#answer(request, { ok: false, error: asError(error), settled: true }),
      );
      return;
    }
    this.#answer(request, { ok: true, value: result });
  }

  #answer(request: number, outcome: CallbackOutcome): void {
    if (this.#closed) return;
    let answer: Uint8Array;
    try {
      answer = this.host.encodeValue(this.module, outcome, this);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      answer = encode({ ok: false, error: new TypeError(`the callback's value cannot be sent: ${reason}`) });
    }
    this.#answers.push({ request, answer });
    this.#pump();
  }
}

/** The callback ids of a session's functions, and its channels. */
export class Callbacks {
  readonly #ids = new WeakMap<object, string>();
  readonly #channels = new Map<string, CallbackChannel>();
  /** The replica each module's calls with callbacks go to when nothing else fixes one. */
  readonly #homes = new Map<string, Promise<string>>();

  constructor(readonly host: ChannelHost) {}

  /** The reference a function travels as (registered in a channel when its call is sent). */
  refFor(fn: (...args: unknown[]) => unknown): CallbackRef {
    let id = this.#ids.get(fn);
    if (!id) {
      id = randomBytes(16).toString('base64url');
      this.#ids.set(fn, id);
    }
    return new CallbackRef(id, fn.name || 'anonymous');
  }

  /** The channel of a module's replica. */
  channel(module: string, server: string): CallbackChannel {
    const key = `${module}\0${server}`;
    let channel = this.#channels.get(key);
    if (!channel) {
      channel = new CallbackChannel(module, server, this.host, (gone) => {
        if (this.#channels.get(key) === gone) this.#channels.delete(key);
        this.#homes.delete(module);
      });
      this.#channels.set(key, channel);
    }
    return channel;
  }

  /**
   * The replica a call with callbacks goes to when its references fix none: asked once, within the
   * call's own deadline (the first exchange may wait for the module to start).
   */
  home(module: string, timeoutMs: number): Promise<string> {
    let home = this.#homes.get(module);
    if (!home) {
      const body = encode({
        v: PROGRAM_VERSION,
        session: this.host.session,
        ops: [{ op: 'callbacks', answers: [], released: [], wait: 0 }],
      });
      home = this.host.exchange(module, undefined, body, timeoutMs, false).then((bytes) => {
        const response = decode(bytes) as InvokeResponse;
        if (!response.ok) throw new SpliceError(Code.INTERNAL, response.error.message);
        return (response.value as CallbacksResult).server;
      });
      home.catch(() => this.#homes.delete(module));
      this.#homes.set(module, home);
    }
    return home;
  }

  /** Registers the functions a call passes in the channel of its replica. */
  register(module: string, server: string, fns: Array<(...args: unknown[]) => unknown>): CallbackChannel {
    const channel = this.channel(module, server);
    for (const fn of fns) channel.add(this.refFor(fn), fn);
    return channel;
  }

  /** Releases a function everywhere it was passed; false if it was never passed or is released. */
  release(fn: (...args: unknown[]) => unknown): boolean {
    const id = this.#ids.get(fn);
    if (!id) return false;
    let found = false;
    for (const channel of this.#channels.values()) found = channel.release(id) || found;
    return found;
  }

  /** How many functions are live, over every channel. */
  get live(): number {
    let live = 0;
    for (const channel of this.#channels.values()) live += channel.live;
    return live;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#channels.values()].map((c) => c.close()));
    this.#channels.clear();
  }
}

/** Failures worth another exchange: the way there broke, or it ran out of time. */
const TRANSIENT: ReadonlySet<string> = new Set([
  Code.UNAVAILABLE,
  Code.DEADLINE_EXCEEDED,
  Code.RESOURCE_EXHAUSTED,
  Code.INTERNAL,
  Code.UNKNOWN,
]);

/**
 * The channel cannot go on: the replica is gone (restarted, scaled down: its stubs went with it),
 * or the exchange is refused for good (not a module-server's callback endpoint, no credential).
 */
function isGone(error: unknown): boolean {
  return error instanceof SpliceError && !TRANSIENT.has(error.code);
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  const error = new Error(
    typeof thrown === 'string' ? thrown : 'the callback threw a value that is not an Error',
  );
  error.name = 'NonErrorThrown';
  return error;
}
