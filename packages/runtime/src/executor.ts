/**
 * Runs an invocation program against the module: each operation walks its path from the module
 * root, a remote reference or an earlier result, through the guard, and the last result is returned.
 */
import {
  Code,
  type InvokeRequest,
  isPlainObject,
  Kwargs,
  type Op,
  RemoteRef,
  Slot,
  SpliceError,
  type Target,
} from '@splice-orc/protocol';
import { checkDeep, checkKey, checkValue, formatPath } from './guard.js';
import type { ObjectTable } from './object-table.js';

/** What a program runs against. */
export interface ExecutionContext {
  root: object;
  table: ObjectTable;
  /** Id of this server instance: references made by another instance are not ours. */
  serverId: string;
  session: string;
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
  const base = resolveTarget(op.target, ctx, results);
  checkValue(base, []);
  const n = op.path.length;
  if (op.op === 'get') return { value: checked((await settle(walk(base, op.path, 0, n))).value, op.path) };
  const args = bindArgs(op.args, ctx, results);
  // The parent is read once and is `this` for the call, as in `parent.fn(...)`.
  const self = n === 0 ? undefined : walk(base, op.path, 0, n - 1);
  const fn = n === 0 ? base : walk(self, op.path, n - 1, n);
  if (typeof fn !== 'function') {
    throw new TypeError(`${formatPath(op.path)} is not a ${op.op === 'new' ? 'constructor' : 'function'}`);
  }
  if (op.op === 'new') return { value: checked(Reflect.construct(fn, args), op.path) };
  return { value: checked((await settle(Reflect.apply(fn, self, args))).value, op.path) };
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

/** Replaces references and slots in decoded arguments, in place: the decoded tree is ours. */
function bindArgs(args: unknown[], ctx: ExecutionContext, results: unknown[]): unknown[] {
  const bind = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
    if (value instanceof Kwargs) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        'keyword arguments (kw()) are for Python modules: a Node module takes positional arguments only',
      );
    }
    if (value instanceof RemoteRef || value instanceof Slot) {
      const bound = value instanceof Slot ? slotValue(value, results) : lookupRef(value, ctx);
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
