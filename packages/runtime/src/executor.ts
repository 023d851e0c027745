/**
 * Runs an invocation program against the module: each operation walks its path from the module
 * root, a remote reference or an earlier result, through the guard, and the last result is returned.
 */
import {
  CallbackRef,
  Code,
  type InvokeRequest,
  isPlainObject,
  Kwargs,
  type Op,
  type PullResult,
  RemoteRef,
  Slot,
  SpliceError,
  type Target,
} from '@splice-orc/protocol';
import { type CallbackHub, withCallDeadline } from './callbacks.js';
import { checkDeep, checkKey, checkValue, formatPath } from './guard.js';
import type { ObjectTable } from './object-table.js';
import { Pipe } from './pipe.js';

/** What a program runs against. */
export interface ExecutionContext {
  root: object;
  table: ObjectTable;
  /** Id of this server instance: references made by another instance are not ours. */
  serverId: string;
  session: string;
  /** Stubs for the app's functions among arguments; without it, a callback is refused. */
  callbacks?: CallbackHub | undefined;
  /** When the call's budget runs out (ms since the epoch): bounds a callback's wait. */
  deadline?: number | undefined;
}

/** Runs every operation in order and returns the result of the last get, call or new (undefined for none). */
export async function execute(request: InvokeRequest, ctx: ExecutionContext): Promise<{ value: unknown }> {
  const results: unknown[] = [];
  let last: unknown;
  for (const op of request.ops) {
    const { value } = await runOp(op, ctx, results);
    results.push(value);
    if (op.op !== 'release') last = value;
  }
  return { value: last };
}

/**
 * Runs one operation. The result is boxed: an async function would adopt a thenable it returns,
 * and only promises and thenable class instances (query builders and the like) are awaited, never a
 * plain object whose `then` came from the caller's arguments.
 */
async function runOp(op: Op, ctx: ExecutionContext, results: unknown[]): Promise<{ value: unknown }> {
  if (op.op === 'release') {
    ctx.table.release(ctx.session, op.ids);
    return { value: undefined };
  }
  if (op.op === 'pipe') return { value: new Pipe() };
  const base = resolveTarget(op.target, ctx, results);
  checkValue(base, []);
  if (op.op === 'pull') return { value: await pull(base, op.max, op.target instanceof RemoteRef) };
  if (op.op === 'close') return { value: await close(base) };
  if (op.op === 'push') {
    if (!(base instanceof Pipe))
      throw new TypeError('push needs the reference of a pipe (a stream argument)');
    const items = op.items.map((item) => bindArgs([item], ctx, results)[0]);
    return { value: await base.push(items, op.end, op.error) };
  }
  const n = op.path.length;
  if (op.op === 'get') return { value: checked((await settle(walk(base, op.path, 0, n))).value, op.path) };
  const args = bindArgs(op.args, ctx, results);
  // The parent is read once and is `this` for the call, as in `parent.fn(...)`.
  const self = n === 0 ? undefined : walk(base, op.path, 0, n - 1);
  const fn = n === 0 ? base : walk(self, op.path, n - 1, n);
  if (typeof fn !== 'function') {
    throw new TypeError(`${formatPath(op.path)} is not a ${op.op === 'new' ? 'constructor' : 'function'}`);
  }
  const deadline = ctx.deadline ?? Number.POSITIVE_INFINITY;
  if (op.op === 'new') {
    return {
      value: checked(
        withCallDeadline(deadline, () => Reflect.construct(fn, args)),
        op.path,
      ),
    };
  }
  const result = withCallDeadline(deadline, () => Reflect.apply(fn, self, args));
  return { value: checked((await settle(result)).value, op.path) };
}

/** A `next()` that was not ready when a pull returned, kept for the next pull of that iterator. */
const waiting = new WeakMap<object, PromiseLike<IteratorResult<unknown>>>();
const NOT_YET = Symbol('not yet');
/** An error an iterator threw after a pull had taken items: it is thrown by the next pull. */
const failed = new WeakMap<object, { error: unknown }>();

interface AnyIterator {
  next(): IteratorResult<unknown> | PromiseLike<IteratorResult<unknown>>;
  return?(): unknown;
}

/** The iterator a pull reads: the value itself when it has `next`, else the one its iterable makes. */
function iteratorOf(value: unknown): AnyIterator {
  if (value !== null && (typeof value === 'object' || typeof value === 'function')) {
    const candidate = value as Partial<AnyIterator> & Partial<AsyncIterable<unknown> & Iterable<unknown>>;
    if (typeof candidate.next === 'function') return candidate as AnyIterator;
    const make = candidate[Symbol.asyncIterator] ?? candidate[Symbol.iterator];
    if (typeof make === 'function') {
      const made = Reflect.apply(make, value, []) as unknown;
      checkValue(made, ['(iterator)']);
      if (made !== null && typeof (made as Partial<AnyIterator>).next === 'function')
        return made as AnyIterator;
    }
  }
  throw new TypeError(`${value === null ? 'null' : typeof value} value is not iterable`);
}

/**
 * Takes up to `max` items: the first is waited for; after it, only items ready within this turn of
 * the event loop are taken, so a slow producer (a stream of tokens) is passed on as it produces and
 * a fast one in full windows. The iterator comes back when this pull made it (the caller has no
 * reference to it yet) and it is not done.
 */
async function pull(value: unknown, max: number, targetIsReference: boolean): Promise<PullResult> {
  const iterator = iteratorOf(value);
  const stashed = failed.get(iterator);
  if (stashed) {
    failed.delete(iterator);
    throw stashed.error;
  }
  const items: unknown[] = [];
  let done = false;
  try {
    done = await take(iterator, items, max);
  } catch (error) {
    // The items taken before the error are answered; the error comes with the next pull.
    if (items.length === 0) throw error;
    failed.set(iterator, { error });
  }
  const made = !(targetIsReference && iterator === value);
  return done || !made ? { items, done } : { items, done, iterator };
}

/** Takes items into `items`; true when the iterator is done. */
async function take(iterator: AnyIterator, items: unknown[], max: number): Promise<boolean> {
  while (items.length < max) {
    let step: IteratorResult<unknown> | PromiseLike<IteratorResult<unknown>> =
      waiting.get(iterator) ?? iterator.next();
    waiting.delete(iterator);
    if (isThenable(step)) {
      if (items.length === 0) step = await step;
      else {
        const pending = step;
        const ready = await Promise.race([
          Promise.resolve(pending).then(
            (result) => ({ result }),
            (error: unknown) => ({ error }),
          ),
          new Promise<typeof NOT_YET>((resolve) => setImmediate(resolve, NOT_YET)),
        ]);
        if (ready === NOT_YET) {
          waiting.set(iterator, pending);
          return false;
        }
        if ('error' in ready) throw ready.error;
        step = ready.result;
      }
    }
    if (step === null || typeof step !== 'object')
      throw new TypeError('the iterator gave a result that is not an object');
    if (step.done) return true;
    items.push(checked(step.value, ['(item)']));
  }
  return false;
}

/** Ends an iterator early (`return()`, which runs a generator's `finally`); nothing for one without it. */
async function close(value: unknown): Promise<undefined> {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  if (value instanceof Pipe) {
    value.cancel();
    return undefined;
  }
  waiting.delete(value);
  const end = (value as Partial<AnyIterator>).return;
  if (typeof end === 'function') await Reflect.apply(end, value, []);
  return undefined;
}

function isThenable(value: unknown): value is PromiseLike<IteratorResult<unknown>> {
  return (
    value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * Awaits a promise or a thenable class instance; anything else is a value as it is. The result is
 * boxed so that no later `await` adopts a thenable value.
 */
function settle(value: unknown): Promise<{ value: unknown }> {
  if (value instanceof Promise) return value.then((v: unknown) => ({ value: v }));
  const thenable =
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function' &&
    !isPlainObject(value);
  if (!thenable) return Promise.resolve({ value });
  return new Promise((resolve, reject) => {
    (value as PromiseLike<unknown>).then((v) => resolve({ value: v }), reject);
  });
}

function walk(base: unknown, path: readonly string[], from: number, to: number): unknown {
  let value = base;
  for (let i = from; i < to; i++) {
    const key = path[i]!;
    checkKey(key, path);
    if (value === null || value === undefined) {
      throw new TypeError(`cannot read '${key}' of ${value} (at ${formatPath(path.slice(0, i + 1))})`);
    }
    value = (value as Record<string, unknown>)[key];
    checkValue(value, path.slice(0, i + 1));
  }
  return value;
}

function checked(value: unknown, path: readonly string[]): unknown {
  checkDeep(value, path);
  return value;
}

/** The result of an earlier operation; anything but the index of one is refused. */
function slotValue(slot: Slot, results: unknown[]): unknown {
  const i = slot.index;
  if (!Number.isSafeInteger(i) || i < 0 || i >= results.length) {
    throw new SpliceError(
      Code.INVALID_ARGUMENT,
      `slot ${String(i)} is not the index of an earlier operation`,
    );
  }
  return results[i];
}

function resolveTarget(target: Target, ctx: ExecutionContext, results: unknown[]): unknown {
  if (target === null) return ctx.root;
  if (target instanceof Slot) return slotValue(target, results);
  return lookupRef(target, ctx);
}

function lookupRef(ref: RemoteRef, ctx: ExecutionContext): object {
  if (ref.server !== ctx.serverId) {
    throw new SpliceError(
      Code.NOT_FOUND,
      `remote reference ${ref.id} (${ref.label}) belongs to module-server ${ref.server}, not to this one (${ctx.serverId}): the server that held it has restarted or stopped`,
      { details: { id: ref.id, server: ref.server } },
    );
  }
  return ctx.table.get(ctx.session, ref.id);
}

/** Binds the references and callbacks in a value the app answered a callback with. */
export function bindValue(value: unknown, ctx: ExecutionContext): unknown {
  return bindArgs([value], ctx, [])[0];
}

/**
 * Replaces references, slots and callback references in decoded arguments, in place: the decoded
 * tree is ours.
 */
function bindArgs(args: unknown[], ctx: ExecutionContext, results: unknown[]): unknown[] {
  const bind = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
    if (value instanceof Kwargs) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        'keyword arguments (kw()) are for Python modules: a Node module takes positional arguments only',
      );
    }
    if (value instanceof CallbackRef) {
      if (!ctx.callbacks) {
        throw new SpliceError(
          Code.INVALID_ARGUMENT,
          'this server takes no callbacks (functions as arguments)',
        );
      }
      return ctx.callbacks.stub(ctx.session, value);
    }
    if (value instanceof RemoteRef || value instanceof Slot) {
      const bound = value instanceof Slot ? slotValue(value, results) : lookupRef(value, ctx);
      // A stream argument: the module reads the pipe's stream.
      if (bound instanceof Pipe) return bound.readable();
      checkDeep(bound, ['(argument)']);
      return bound;
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = bind(value[i]);
    } else if (value instanceof Map) {
      const entries = [...value].map(([k, v]) => [bind(k), bind(v)] as const);
      value.clear();
      for (const [k, v] of entries) value.set(k, v);
    } else if (value instanceof Set) {
      const items = [...value].map(bind);
      value.clear();
      for (const item of items) value.add(item);
    } else if (isPlainObject(value)) {
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) record[key] = bind(record[key]);
    }
    return value;
  };
  return args.map(bind);
}
