/**
 * A client session: its id, the proxies it hands out, and the dispatch of their programs. A chain
 * is compiled into a program, sent over the link its module's placement (or its references) says,
 * and the answer decoded; references in the answer become proxies whose lifetime `References`
 * keeps. A call that uses references is routed to the server holding them (with several replicas,
 * the pod-manager would otherwise pick any).
 */
import { randomUUID } from 'node:crypto';
import {
  type CallbackRef,
  Code,
  decode,
  describe,
  encode,
  type InvokeResponse,
  MAX_PULL_ITEMS,
  type Op,
  PROGRAM_VERSION,
  type RemoteRef,
  Slot,
  SpliceError,
} from '@splice-orc/protocol';
import { Callbacks } from './callbacks.js';
import { RemoteError } from './errors.js';
import { RemoteIterator } from './iteration.js';
import type { PlacementTracker } from './placement.js';
import { compile } from './program-compiler.js';
import { References } from './references.js';
import { createRemoteProxy, nodeOf, type ProxyHost, type ProxyNode, type RefHandle } from './remote-proxy.js';
import { pump, replaceStreams } from './stream-arguments.js';

/** Options of a session. */
export interface SessionOptions {
  /** Where modules run, and the links to them. */
  placement: PlacementTracker;
  /** Default per-call timeout, ms. */
  timeoutMs: number;
  /** How long GC-found releases wait to be sent together, ms. Default 1 000. */
  releaseBatchMs?: number;
  /** How `for await` reads remote iterators. */
  iterate?: IterateOptions | undefined;
}

/** How `for await` reads remote iterators. */
export interface IterateOptions {
  /** Items per pull (1 to 1 024). Default 64. */
  window?: number;
  /** Ask for the next window while the current one is consumed. Default true. */
  readAhead?: boolean;
}

/** Options of one call. */
export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The state shared by every proxy of one client. */
export class Session implements ProxyHost {
  readonly id = randomUUID();
  readonly #options: SessionOptions;
  readonly #refs: References;
  readonly #callbacks: Callbacks;
  /** Bound once: every call's compile gets it (no closure per call on the hot path). */
  readonly #refFor: (fn: (...args: unknown[]) => unknown) => CallbackRef;
  #closed = false;

  constructor(options: SessionOptions) {
    this.#options = options;
    this.#refFor = (fn) => this.#callbacks.refFor(fn);
    this.#callbacks = new Callbacks({
      session: this.id,
      exchange: (module, route, body, timeoutMs, longPoll) =>
        options.placement.exchangeCallbacks(module, body, { timeoutMs, route, longPoll }),
      decodeValue: (module, bytes) => decode(bytes, { importRef: (ref) => this.#proxyOf(module, ref) }),
      encodeValue: (module, value, channel) =>
        encode(value, {
          exportRef: (v) => {
            const node = nodeOf(v);
            if (node?.base && node.steps.length === 0 && node.module === module) return node.base.ref;
            if (!node && typeof v === 'function') {
              const fn = v as (...args: unknown[]) => unknown;
              const ref = this.#callbacks.refFor(fn);
              channel.add(ref, fn);
              return ref;
            }
            return refuseByValue(v);
          },
        }),
    });
    this.#refs = new References({
      send: (module, ops, o) => this.send(module, ops, o),
      releaseBatchMs: options.releaseBatchMs ?? 1_000,
    });
  }

  /** The proxy of a module root. */
  root(module: string, options?: CallOptions): unknown {
    return createRemoteProxy({ module, base: null, steps: [], options }, this);
  }

  /** Sends the program a node stands for; never throws synchronously. */
  async run(node: ProxyNode, options: CallOptions = node.options ?? {}): Promise<unknown> {
    const ops: Op[] = [];
    const servers = new Set<string>();
    const handles: RefHandle[] = [];
    const streams: AsyncIterable<unknown>[] = [];
    const callbacks = { refFor: this.#refFor, fns: [] };
    const result = compile(node, ops, servers, handles, streams, callbacks);
    if (streams.length > 0) return this.#runWithStreams(node, streams, servers, options);
    // A bare reference: nothing to run remotely, its value is itself.
    if (!(result instanceof Slot || result === null)) return createRemoteProxy(node, this);
    if (servers.size > 1) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `one call cannot use references held by different module-server replicas (${[...servers].join(', ')})`,
      );
    }
    try {
      const route: string | undefined = servers.values().next().value;
      if (callbacks.fns.length > 0)
        return await this.#runWithCallbacks(node.module, ops, route, callbacks.fns, options);
      return await this.send(node.module, ops, { ...options, route });
    } finally {
      // The handles stay reachable until the answer is in: the garbage collector must not release
      // a reference that this very program uses.
      keepAlive(handles);
    }
  }

  /**
   * A call that passes functions (INVOKE.md 3.7): it goes to the replica its references fix, else
   * to the module's callback home (asked once), where the functions are registered; the channel
   * long-polls for callback requests while the call runs.
   */
  async #runWithCallbacks(
    module: string,
    ops: Op[],
    route: string | undefined,
    fns: Array<(...args: unknown[]) => unknown>,
    options: CallOptions,
  ): Promise<unknown> {
    if (this.#closed) throw new SpliceError(Code.FAILED_PRECONDITION, 'the client is closed');
    this.#options.placement.checkCallbackRoute(module, route);
    const server =
      route ?? (await this.#callbacks.home(module, options.timeoutMs ?? this.#options.timeoutMs));
    this.#callbacks.register(module, server, fns);
    return this.send(module, ops, { ...options, route: server });
  }

  #proxyOf(module: string, ref: RemoteRef): unknown {
    return createRemoteProxy({ module, base: this.#refs.adopt(module, ref), steps: [] }, this);
  }

  /**
   * A call with stream arguments: a pipe per stream on one replica (the one the call's references
   * need, else the first pipe's), the call with the pipes in the streams' places, and the streams
   * pumped into their pipes while it runs. The pipes are freed when the call ends.
   */
  async #runWithStreams(
    node: ProxyNode,
    streams: AsyncIterable<unknown>[],
    servers: Set<string>,
    options: CallOptions,
  ): Promise<unknown> {
    let route: string | undefined = servers.values().next().value;
    const pipes = new Map<AsyncIterable<unknown>, RefHandle>();
    try {
      for (const stream of streams) {
        const proxy = await this.send(node.module, [{ op: 'pipe' }], { ...options, route });
        const handle = nodeOf(proxy)?.base;
        if (!handle) throw new SpliceError(Code.INTERNAL, 'the module-server did not answer a pipe');
        pipes.set(stream, handle);
        route ??= handle.ref.server;
      }
      const call = this.run(
        replaceStreams(node, (stream) =>
          createRemoteProxy({ module: node.module, base: pipes.get(stream) ?? null, steps: [] }, this),
        ),
        options,
      );
      let over = false;
      const push = (pipe: RefHandle, items: unknown[], end: boolean, error?: string) =>
        this.send(
          node.module,
          [{ op: 'push', target: pipe.ref, items, end, ...(error === undefined ? {} : { error }) }],
          {
            ...options,
            route: pipe.ref.server,
          },
        ) as Promise<{ cancelled: boolean }>;
      const pumps = [...pipes].map(([stream, pipe]) => pump(stream, pipe, push, () => over));
      try {
        return await call;
      } finally {
        // The call is over: its pipes are closed (a push waiting for room is answered), the pumps stop.
        over = true;
        for (const pipe of pipes.values()) {
          await this.send(node.module, [{ op: 'close', target: pipe.ref }], {
            ...options,
            route: pipe.ref.server,
          }).catch(() => {});
        }
        await Promise.all(pumps);
      }
    } finally {
      for (const handle of pipes.values()) await this.#refs.release(handle).catch(() => {});
    }
  }

  /** Sends a program to a module and decodes the answer; remote throws become RemoteErrors. */
  async send(
    module: string,
    ops: Op[],
    options: CallOptions & { route?: string | undefined } = {},
  ): Promise<unknown> {
    if (this.#closed) throw new SpliceError(Code.FAILED_PRECONDITION, 'the client is closed');
    const { route } = options;
    const releases = route ? this.#refs.takeReleases(module, route) : [];
    // Appended, not prepended: the program's slots number its own operations from 0.
    const program = releases.length ? [...ops, { op: 'release', ids: releases } as Op] : ops;
    const body = encode({ v: PROGRAM_VERSION, session: this.id, ops: program }, { exportRef: refuseByValue });
    const call = { timeoutMs: options.timeoutMs ?? this.#options.timeoutMs, signal: options.signal, route };
    let bytes: Uint8Array;
    try {
      const link = await this.#options.placement.linkFor(module, route, this.#refs.leaseOf(module));
      bytes = await link.invoke(module, body, call);
    } catch (error) {
      if (route) this.#refs.restoreReleases(module, route, releases);
      throw error;
    }
    const response = decode(bytes, { importRef: (ref) => this.#proxyOf(module, ref) }) as InvokeResponse;
    this.#refs.answered(module, route, response.lease);
    if (!response.ok) throw new RemoteError(response.error, module);
    return response.value;
  }

  iterate(node: ProxyNode): AsyncIterableIterator<unknown> {
    const o = this.#options.iterate ?? {};
    const window = o.window ?? 64;
    if (!Number.isSafeInteger(window) || window < 1 || window > MAX_PULL_ITEMS) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `iterate.window must be an integer from 1 to ${MAX_PULL_ITEMS}`,
      );
    }
    return new RemoteIterator(this, node, {
      window,
      readAhead: o.readAhead ?? true,
      timeoutMs: node.options?.timeoutMs,
      signal: node.options?.signal,
    });
  }

  release(handle: RefHandle): Promise<void> {
    return this.#refs.release(handle);
  }

  /** Releases a function passed as a callback: later calls of it fail in the module. */
  releaseCallback(fn: (...args: unknown[]) => unknown): boolean {
    return this.#callbacks.release(fn);
  }

  /** Sends pending releases and the last statistics, stops timers. Further calls fail. */
  /** How many functions of the app modules can call now. */
  liveCallbacks(): number {
    return this.#callbacks.live;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    const { placement } = this.#options;
    placement.close();
    await this.#callbacks.close();
    await placement.report().catch(() => {});
    await this.#refs.close();
    this.#closed = true;
  }
}

function refuseByValue(value: object): never {
  throw new SpliceError(
    Code.INVALID_ARGUMENT,
    `cannot send ${describe(value)} to a remote module: pass plain data (objects, arrays, typed arrays, Map, Set, Date, RegExp, errors) or remote references`,
  );
}

/** Touches what it is given, so that it stays reachable until this point. */
function keepAlive(values: unknown[]): void {
  if (values.length < 0) throw new Error('unreachable');
}
