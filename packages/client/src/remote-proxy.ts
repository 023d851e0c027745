/**
 * The ES Proxy that stands for a remote value. Property reads, calls and `new` on it record steps;
 * awaiting it compiles the steps into an invocation program and sends it. A proxy with no pending
 * steps (a module root, a remote reference) is not thenable, so it is never mistaken for a promise.
 * Every trap is handled on purpose: writes throw, reflection sees an empty object.
 */
import { inspect } from 'node:util';
import type { RemoteRef } from '@splice-orc/protocol';

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
  /** Reads what a node stands for as an async iterator (`for await`). */
  iterate(node: ProxyNode): AsyncIterableIterator<unknown>;
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
  // `for await (const x of remote)`: the remote iterator, iterable, generator or stream, pulled in windows.
  if (key === Symbol.asyncIterator && (node.base || node.steps.length > 0)) return () => host.iterate(node);
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
