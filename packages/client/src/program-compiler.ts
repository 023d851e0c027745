/**
 * Compiles what a proxy stands for into an invocation program: each recorded call or `new` is an
 * operation on the module root, a reference or the slot of an earlier operation, and pending
 * proxies among arguments become operations of the same program (promise pipelining).
 */
import {
  type CallbackRef,
  Code,
  isPlainObject,
  Kwargs,
  NDArray,
  type Op,
  Slot,
  SpliceError,
  type Target,
} from '@splice-orc/protocol';
import { describeNode, nodeOf, type ProxyNode, type RefHandle } from './remote-proxy.js';
import { isStreamArgument } from './stream-arguments.js';

/**
 * Compiles a node into operations appended to `ops`, and returns what stands for its value: the
 * module root, its reference, or the slot of its last operation. Pending proxies among arguments
 * are compiled into the same program first (promise pipelining). The module-server instances
 * whose references the program uses are added to `servers` (the call must go to that server), and
 * the handles of those references to `handles` (the caller keeps them alive while the call runs),
 * and stream arguments (async iterables, sent through pipes) to `streams`. Functions of the app
 * become callback references when `callbacks` is given (collected in its `fns`), else they stay
 * and the encoder refuses them.
 */
export function compile(
  node: ProxyNode,
  ops: Op[],
  servers: Set<string> = new Set(),
  handles: RefHandle[] = [],
  streams: AsyncIterable<unknown>[] = [],
  callbacks?: CollectedCallbacks,
): Target {
  if (node.base) {
    servers.add(usable(node.base).ref.server);
    handles.push(node.base);
  }
  let current: Target = node.base ? node.base.ref : null;
  let path: string[] = [];
  for (const step of node.steps) {
    if (step.kind === 'get') {
      path.push(step.key);
      continue;
    }
    const args = step.args.map((a) => substitute(a, node.module, ops, servers, handles, streams, callbacks));
    ops.push({ op: step.kind, target: current, path, args });
    current = new Slot(ops.length - 1);
    path = [];
  }
  if (path.length > 0) {
    ops.push({ op: 'get', target: current, path });
    current = new Slot(ops.length - 1);
  }
  return current;
}

function usable(handle: RefHandle): RefHandle {
  if (handle.released) {
    throw new SpliceError(
      Code.NOT_FOUND,
      `remote reference ${handle.ref.label}#${handle.ref.id} was released`,
    );
  }
  return handle;
}

/** The functions a program passes, and the references they travel as. */
export interface CollectedCallbacks {
  refFor(fn: (...args: unknown[]) => unknown): CallbackRef;
  fns: Array<(...args: unknown[]) => unknown>;
}

/** Replaces proxies inside an argument by references or slots; plain data is kept as it is. */
function substitute(
  value: unknown,
  module: string,
  ops: Op[],
  servers: Set<string>,
  handles: RefHandle[],
  streams: AsyncIterable<unknown>[],
  callbacks: CollectedCallbacks | undefined,
): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return value;
  const node = nodeOf(value);
  if (!node && typeof value === 'function' && callbacks) {
    const fn = value as (...args: unknown[]) => unknown;
    callbacks.fns.push(fn);
    return callbacks.refFor(fn);
  }
  if (node) {
    if (node.module !== module) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `${describeNode(node)} lives in module ${node.module} and cannot be passed to module ${module}`,
      );
    }
    const result = compile(node, ops, servers, handles, streams, callbacks);
    if (result === null)
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `the module root of ${module} cannot be passed as an argument`,
      );
    return result;
  }
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof NDArray) return value;
  // A stream argument: found here, on the walk the arguments take anyway; the caller opens a pipe.
  if (isStreamArgument(value)) {
    streams.push(value);
    return value;
  }
  const walk = (v: unknown) => substitute(v, module, ops, servers, handles, streams, callbacks);
  if (value instanceof Kwargs) {
    const values = walk({ ...value.values }) as Record<string, unknown>;
    return new Kwargs(values);
  }
  // Copy-on-write: an argument with no proxy inside is passed on as it is, not copied.
  if (Array.isArray(value)) {
    const out = value.map(walk);
    return out.some((v, i) => v !== value[i]) ? out : value;
  }
  if (value instanceof Map) {
    let changed = false;
    const out = Array.from(value, ([k, v]) => {
      const entry = [walk(k), walk(v)] as const;
      changed ||= entry[0] !== k || entry[1] !== v;
      return entry;
    });
    return changed ? new Map(out) : value;
  }
  if (value instanceof Set) {
    const items = [...value];
    const out = items.map(walk);
    return out.some((v, i) => v !== items[i]) ? new Set(out) : value;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    const record = value as Record<string, unknown>;
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(record)) {
      const v = walk(record[key]);
      if (v !== record[key]) out ??= { ...record };
      if (out) out[key] = v;
    }
    return out ?? value;
  }
  return value;
}
