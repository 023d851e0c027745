/**
 * The ES Proxy that stands for a remote value. Property reads, calls and `new` on it record steps;
 * awaiting it compiles the steps into an invocation program and sends it. A proxy with no pending
 * steps (a module root, a remote reference) is not thenable, so it is never mistaken for a promise.
 * Every trap is handled on purpose: writes throw, reflection sees an empty object.
 */
import { inspect } from 'node:util';
import {
  Code,
  isPlainObject,
  type Op,
  type RemoteRef,
  Slot,
  SpliceError,
  type Target,
} from '@splice-orc/protocol';

/** The remote object a chain starts from. */
export interface RefHandle {
  readonly module: string;
  readonly ref: RemoteRef;
  released: boolean;
}

/** One recorded step. */
export type Step =
  | { kind: 'get'; key: string }
  | { kind: 'call'; args: unknown[] }
  | { kind: 'new'; args: unknown[] };

/** What a proxy stands for: a start (module root or reference) and the steps taken from it. */
export interface ProxyNode {
  readonly module: string;
  /** Per-call options that every call made from this proxy uses. */
  readonly options?: { timeoutMs?: number; signal?: AbortSignal } | undefined;

  readonly base: RefHandle | null;
  readonly steps: readonly Step[];
}

/** What proxies need from the session that made them. */
export interface ProxyHost {
  /** Sends the program for a node and resolves with its decoded value. */
  run(node: ProxyNode): Promise<unknown>;
  /** Releases the reference a node stands for. */
  release(handle: RefHandle): Promise<void>;
}

const nodes = new WeakMap<object, ProxyNode>();

/**
 * A bound function is callable and constructible and has no non-configurable own keys, so the
 * traps may report an empty object without breaking Proxy invariants. util.inspect looks at a
 * proxy's target, not through its traps, so the target carries the description.
 */
function targetFor(node: ProxyNode): () => void {
  const target = function remote() {}.bind(null);
  Object.defineProperty(target, inspect.custom, {
    value: () => `[Remote ${describeNode(node)}]`,
    configurable: true,
  });
  return target;
}

/** The node behind a proxy, or undefined for any other value. */
export function nodeOf(value: unknown): ProxyNode | undefined {
  return (typeof value === 'function' || typeof value === 'object') && value !== null
    ? nodes.get(value)
    : undefined;
}

/** Makes the proxy for a node. */
export function createRemoteProxy(node: ProxyNode, host: ProxyHost): unknown {
  const extend = (step: Step) => createRemoteProxy({ ...node, steps: [...node.steps, step] }, host);
  const pending = node.steps.length > 0;
  const refuse = (what: string) => (): never => {
    throw new TypeError(
      `cannot ${what} a remote value (${describeNode(node)}): change remote objects by calling their methods`,
    );
  };
  const proxy = new Proxy(targetFor(node), {
    get(_t, key) {
      if (typeof key === 'symbol') return symbolMember(key, node, host);
      if (pending && (key === 'then' || key === 'catch' || key === 'finally')) {
        const promise = () => host.run(node);
        return key === 'then'
          ? (ok?: (v: unknown) => unknown, fail?: (e: unknown) => unknown) => promise().then(ok, fail)
          : key === 'catch'
            ? (fail?: (e: unknown) => unknown) => promise().catch(fail)
            : (done?: () => void) => promise().finally(done);
      }
      if (key === 'then') return undefined;
      return extend({ kind: 'get', key });
    },
    apply: (_t, _this, args: unknown[]) => extend({ kind: 'call', args }),
    construct: (_t, args: unknown[]) => extend({ kind: 'new', args }) as object,
    has: (_t, key) => pending && key === 'then',
    set: refuse('set a property of'),
    deleteProperty: refuse('delete a property of'),
    defineProperty: refuse('define a property on'),
    setPrototypeOf: refuse('set the prototype of'),
    preventExtensions: refuse('freeze'),
    ownKeys: () => [],
    getOwnPropertyDescriptor: () => undefined,
    getPrototypeOf: () => null,
    isExtensible: () => true,
  });
  nodes.set(proxy, node);
  return proxy;
}

function symbolMember(key: symbol, node: ProxyNode, host: ProxyHost): unknown {
  if (key === Symbol.asyncDispose && node.base && node.steps.length === 0) {
    const handle = node.base;
    return () => host.release(handle);
  }
  if (key === inspect.custom || key === Symbol.toStringTag) return () => `[Remote ${describeNode(node)}]`;
  if (key === Symbol.toPrimitive) {
    return () => {
      throw new TypeError(`${describeNode(node)} is a remote value: await it to get its value`);
    };
  }
  return undefined;
}

/** A readable form of a node for messages: `mathjs.matrix(…).size(…)` or `Matrix#7.size`. */
export function describeNode(node: ProxyNode): string {
  let out = node.base
    ? `${node.module}:${node.base.ref.label}#${node.base.ref.id}@${node.base.ref.server}`
    : node.module;
  for (const step of node.steps)
    out += step.kind === 'get' ? `.${step.key}` : step.kind === 'call' ? '(…)' : ' (new)';
  return out;
}

/**
 * Compiles a node into operations appended to `ops`, and returns what stands for its value: the
 * module root, its reference, or the slot of its last operation. Pending proxies among arguments
 * are compiled into the same program first (promise pipelining). The module-server instances
 * whose references the program uses are added to `servers` (the call must go to that server), and
 * the handles of those references to `handles` (the caller keeps them alive while the call runs).
 */
export function compile(
  node: ProxyNode,
  ops: Op[],
  servers: Set<string> = new Set(),
  handles: RefHandle[] = [],
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
    const args = step.args.map((a) => substitute(a, node.module, ops, servers, handles));
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

/** Replaces proxies inside an argument by references or slots; plain data is kept as it is. */
function substitute(
  value: unknown,
  module: string,
  ops: Op[],
  servers: Set<string>,
  handles: RefHandle[],
): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return value;
  const node = nodeOf(value);
  if (node) {
    if (node.module !== module) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `${describeNode(node)} lives in module ${node.module} and cannot be passed to module ${module}`,
      );
    }
    const result = compile(node, ops, servers, handles);
    if (result === null)
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `the module root of ${module} cannot be passed as an argument`,
      );
    return result;
  }
  if (ArrayBuffer.isView(value) || value instanceof Date) return value;
  const walk = (v: unknown) => substitute(v, module, ops, servers, handles);
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
