/**
 * Callbacks (INVOKE.md 3.7): a function of the app among a call's arguments arrives as a
 * CallbackRef, which the executor replaces by a *stub*: a function that sends a callback request to
 * the app and blocks until the app answers, so module code that calls it synchronously
 * (`_.map(xs, fn)`, `arr.sort(cmp)`) sees a plain value. The blocking and the transport are the
 * {@link CallbackChannel}'s (the module-server's relay thread); this file keeps the stubs, the
 * encoding of arguments and answers, and the lifetime rules: a callback is live while the app's
 * session lives, until the app releases it, and while module code holds its stub. The hub holds
 * stubs weakly: when the garbage collector takes one, the app is told (`dropped`, with how many
 * times the id was bound since its last notice, so that the app keeps a function it has passed
 * again meanwhile) and forgets the function. A loop that passes a fresh function each time does not
 * pile callbacks up.
 */
import {
  type CallbackOutcome,
  type CallbackRef,
  Code,
  type DroppedCallback,
  decode,
  encode,
  SpliceError,
} from '@splice-orc/protocol';
import { referenceMaker } from './invocation-handler.js';
import type { ObjectTable } from './object-table.js';

/** What reaches the hub from the app: a reply to a request, or the end of callbacks. */
export type CallbackMessage =
  | { t: 'answer'; session: string; request: number; answer: Uint8Array }
  | { t: 'failure'; session: string; request: number; message: string }
  | { t: 'released'; session: string; ids: string[] }
  | { t: 'gone'; session: string; message: string }
  | { t: 'closed'; session: string; message: string };

/** Carries callback requests to the app and its replies back. */
export interface CallbackChannel {
  /** Queues a request for the app. */
  send(session: string, request: number, callback: string, args: Uint8Array): void;
  /**
   * Blocks the thread until the first reply to `request` (the other messages that arrive meanwhile
   * go to the listener) or until `deadline` (ms since the epoch): undefined then.
   */
  waitFor(request: number, deadline: number): CallbackMessage | undefined;
  /** Messages nothing waits for: later outcomes of pending requests, releases, closed sessions. */
  listen(listener: (message: CallbackMessage) => void): void;
  /** Tells the relay that a request is no longer waited for (its deadline passed). */
  abandon(session: string, request: number): void;
  /** Tells the app that module code no longer holds these stubs (the garbage collector took them). */
  dropped(session: string, items: DroppedCallback[]): void;
}

/** A session's stub for one id: held weakly, with the number of times the id was bound. */
interface StubEntry {
  ref: WeakRef<(...args: unknown[]) => unknown>;
  binds: number;
}

/** Options of {@link CallbackHub}. */
export interface CallbackHubOptions {
  channel: CallbackChannel;
  table: ObjectTable;
  serverId: string;
  /** Longest one callback invocation waits for the app's answer, ms. Default 30 000. */
  timeoutMs?: number;
  /** Most live callbacks per session. Default {@link MAX_CALLBACKS_PER_SESSION}. */
  maxPerSession?: number;
  /** Binds references and slots in a value the app answered (the executor's binder). */
  bind: (value: unknown, session: string) => unknown;
}

/**
 * The deadline of the call whose synchronous part runs now (ms since the epoch), set by the
 * executor around module code: a callback invoked from it waits no longer than the call may run.
 */
let activeDeadline = Number.POSITIVE_INFINITY;

/** Runs `fn` with `deadline` as the active call's deadline. */
export function withCallDeadline<T>(deadline: number, fn: () => T): T {
  const previous = activeDeadline;
  activeDeadline = deadline;
  try {
    return fn();
  } finally {
    activeDeadline = previous;
  }
}

/** Most live callbacks (stubs) one session may have: past it, a call that passes a new one is refused. */
export const MAX_CALLBACKS_PER_SESSION = 100_000;

/** Sessions whose end is remembered, so that stubs kept by module code fail with a clear message. */
const MAX_ENDED_SESSIONS = 10_000;

interface Pending {
  session: string;
  resolve(value: unknown): void;
  reject(reason: unknown): void;
}

/** The stubs of one module-server, by session and callback id. */
export class CallbackHub {
  readonly #options: CallbackHubOptions;
  readonly #timeoutMs: number;
  readonly #stubs = new Map<string, Map<string, StubEntry>>();
  /** Tells, after a collection, which stubs went: its held value is the entry's session and id. */
  readonly #collected = new FinalizationRegistry<{ session: string; id: string; entry: StubEntry }>((held) =>
    this.#onCollected(held),
  );
  /** Dropped stubs not yet told, by session: sent together once the collector's callbacks ran. */
  readonly #dropped = new Map<string, DroppedCallback[]>();
  #dropFlush: NodeJS.Immediate | undefined;
  readonly #released = new Map<string, Set<string>>();
  readonly #ended = new Map<string, string>();
  readonly #pending = new Map<number, Pending>();
  #seq = 0;

  constructor(options: CallbackHubOptions) {
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    options.channel.listen((message) => this.#receive(message));
  }

  /** The function that stands for `ref` in `session`: the same one each time the app passes it. */
  stub(session: string, ref: CallbackRef): (...args: unknown[]) => unknown {
    const ended = this.#ended.get(session);
    if (ended !== undefined) throw new SpliceError(Code.FAILED_PRECONDITION, ended);
    let stubs = this.#stubs.get(session);
    if (!stubs) {
      stubs = new Map();
      this.#stubs.set(session, stubs);
    }
    // A callback the app released and passes again is live again.
    this.#released.get(session)?.delete(ref.id);
    const entry = stubs.get(ref.id);
    let stub = entry?.ref.deref();
    if (entry && stub) {
      entry.binds++;
    } else {
      const max = this.#options.maxPerSession ?? MAX_CALLBACKS_PER_SESSION;
      // An entry whose stub was collected (its notice not yet run) is replaced: it does not count.
      if (stubs.size - (entry ? 1 : 0) >= max) {
        throw new SpliceError(
          Code.RESOURCE_EXHAUSTED,
          `this session has ${max} live callbacks here: the app must release some (orc.release(fn))`,
          { details: { limit: 'callbacks_per_session', max } },
        );
      }
      stub = this.#makeStub(session, ref);
      // The count goes on from a collected stub whose notice has not run (that notice is dropped):
      // the app subtracts each notice's count from how often it sent the id.
      const fresh: StubEntry = { ref: new WeakRef(stub), binds: (entry?.binds ?? 0) + 1 };
      stubs.set(ref.id, fresh);
      this.#collected.register(stub, { session, id: ref.id, entry: fresh });
    }
    return stub;
  }

  /** A stub was collected: unless its id was bound to a new stub since, the app forgets it. */
  #onCollected({ session, id, entry }: { session: string; id: string; entry: StubEntry }): void {
    const stubs = this.#stubs.get(session);
    if (stubs?.get(id) !== entry) return;
    stubs.delete(id);
    if (stubs.size === 0) this.#stubs.delete(session);
    let items = this.#dropped.get(session);
    if (!items) {
      items = [];
      this.#dropped.set(session, items);
    }
    items.push({ callback: id, binds: entry.binds });
    this.#dropFlush ??= setImmediate(() => {
      this.#dropFlush = undefined;
      for (const [s, list] of this.#dropped) this.#options.channel.dropped(s, list);
      this.#dropped.clear();
    });
  }

  /** How many sessions have callbacks, how many stubs are live, how many calls wait for an outcome. */
  stats(): { sessions: number; stubs: number; pending: number } {
    let stubs = 0;
    for (const session of this.#stubs.values()) stubs += session.size;
    return { sessions: this.#stubs.size, stubs, pending: this.#pending.size };
  }

  #makeStub(session: string, ref: CallbackRef): (...args: unknown[]) => unknown {
    const hub = this;
    const label = ref.label || 'anonymous';
    // A plain function (not an arrow) so that module code may call it with any `this`; the name
    // helps module code and stack traces.
    const stub = {
      [label](...args: unknown[]): unknown {
        return hub.#invoke(session, ref.id, label, args);
      },
    }[label] as (...args: unknown[]) => unknown;
    return stub;
  }

  #invoke(session: string, id: string, label: string, args: unknown[]): unknown {
    const ended = this.#ended.get(session);
    if (ended !== undefined) throw new Error(`callback ${label}: ${ended}`);
    if (this.#released.get(session)?.has(id)) {
      throw new Error(`callback ${label} was released by the app and can no longer be called`);
    }
    const request = ++this.#seq;
    const { channel } = this.#options;
    channel.send(session, request, id, this.#encodeArgs(session, args));
    const timeoutMs = Math.min(this.#timeoutMs, Math.max(0, activeDeadline - Date.now()));
    const reply = channel.waitFor(request, Date.now() + timeoutMs);
    if (!reply) {
      channel.abandon(session, request);
      throw new Error(`callback ${label} was not answered by the app within ${timeoutMs} ms`);
    }
    return this.#outcome(reply, label);
  }

  /** The arguments, encoded like an answer: plain data by value, anything else as a reference. */
  #encodeArgs(session: string, args: unknown[]): Uint8Array {
    const made: number[] = [];
    try {
      return encode(args, { exportRef: referenceMaker(this.#options, session, made, '(callback argument)') });
    } catch (cause) {
      this.#options.table.release(session, made);
      throw cause;
    }
  }

  /** What the stub returns (or throws) for a reply. */
  #outcome(reply: CallbackMessage, label: string): unknown {
    if (reply.t === 'failure') throw new Error(`callback ${label}: ${reply.message}`);
    if (reply.t !== 'answer') throw new Error(`callback ${label}: the app's session ended`);
    const outcome = this.#decode(reply.session, reply.answer);
    if ('pending' in outcome) {
      return new Promise((resolve, reject) => {
        this.#pending.set(reply.request, { session: reply.session, resolve, reject });
      });
    }
    // The app's function returned a promise whose outcome overtook the `pending`.
    if (outcome.settled) return outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  #decode(session: string, bytes: Uint8Array): CallbackOutcome {
    const outcome = decode(bytes) as CallbackOutcome | null;
    if (outcome === null || typeof outcome !== 'object') {
      throw new SpliceError(Code.INVALID_ARGUMENT, 'malformed callback answer');
    }
    if ('pending' in outcome) return outcome;
    const settled = outcome.settled === true;
    if (outcome.ok) return { ok: true, value: this.#options.bind(outcome.value, session), settled };
    const error = outcome.error instanceof Error ? outcome.error : new Error(String(outcome.error));
    return { ok: false, error, settled };
  }

  /** Later outcomes of pending requests; releases; ends of sessions. */
  #receive(message: CallbackMessage): void {
    if (message.t === 'released') {
      let released = this.#released.get(message.session);
      if (!released) {
        released = new Set();
        this.#released.set(message.session, released);
      }
      for (const id of message.ids) {
        released.add(id);
        this.#stubs.get(message.session)?.delete(id);
      }
      return;
    }
    if (message.t === 'closed') {
      this.#end(message.session, message.message);
      return;
    }
    if (message.t === 'gone') {
      this.#rejectPending(message.session, message.message);
      return;
    }
    const pending = this.#pending.get(message.request);
    if (!pending || pending.session !== message.session) return;
    this.#pending.delete(message.request);
    if (message.t === 'failure') {
      pending.reject(new Error(message.message));
      return;
    }
    try {
      const outcome = this.#decode(message.session, message.answer);
      if ('pending' in outcome) pending.reject(new Error('the app answered a pending callback twice'));
      else if (outcome.ok) pending.resolve(outcome.value);
      else pending.reject(outcome.error);
    } catch (error) {
      pending.reject(error);
    }
  }

  #end(session: string, message: string): void {
    this.#stubs.delete(session);
    this.#dropped.delete(session);
    this.#released.delete(session);
    this.#ended.set(session, message);
    if (this.#ended.size > MAX_ENDED_SESSIONS) {
      const oldest = this.#ended.keys().next().value;
      if (oldest !== undefined) this.#ended.delete(oldest);
    }
    this.#rejectPending(session, message);
  }

  /** Outcomes the app will never send: the calls waiting for them fail. */
  #rejectPending(session: string, message: string): void {
    for (const [request, pending] of this.#pending) {
      if (pending.session !== session) continue;
      this.#pending.delete(request);
      pending.reject(new Error(message));
    }
  }
}
