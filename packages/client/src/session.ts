/**
 * A client session: its id, the proxies it hands out, and the dispatch of their programs. A chain
 * is compiled into a program, sent over the link its module's placement (or its references) says,
 * and the answer decoded; references in the answer become proxies whose lifetime `References`
 * keeps. A call that uses references is routed to the server holding them (with several replicas,
 * the pod-manager would otherwise pick any).
 */
import { randomUUID } from 'node:crypto';
import {
  Code,
  decode,
  describe,
  encode,
  type InvokeResponse,
  type Op,
  PROGRAM_VERSION,
  Slot,
  SpliceError,
} from '@splice-orc/protocol';
import { RemoteError } from './errors.js';
import type { PlacementTracker } from './placement.js';
import { compile } from './program-compiler.js';
import { References } from './references.js';
import { createRemoteProxy, type ProxyHost, type ProxyNode, type RefHandle } from './remote-proxy.js';

/** Options of a session. */
export interface SessionOptions {
  /** Where modules run, and the links to them. */
  placement: PlacementTracker;
  /** Default per-call timeout, ms. */
  timeoutMs: number;
  /** How long GC-found releases wait to be sent together, ms. Default 1 000. */
  releaseBatchMs?: number;
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
  #closed = false;

  constructor(options: SessionOptions) {
    this.#options = options;
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
    const result = compile(node, ops, servers, handles);
    // A bare reference: nothing to run remotely, its value is itself.
    if (!(result instanceof Slot || result === null)) return createRemoteProxy(node, this);
    if (servers.size > 1) {
      throw new SpliceError(
        Code.INVALID_ARGUMENT,
        `one call cannot use references held by different module-server replicas (${[...servers].join(', ')})`,
      );
    }
    try {
      return await this.send(node.module, ops, { ...options, route: servers.values().next().value });
    } finally {
      // The handles stay reachable until the answer is in: the garbage collector must not release
      // a reference that this very program uses.
      keepAlive(handles);
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
    const response = decode(bytes, {
      importRef: (ref) => createRemoteProxy({ module, base: this.#refs.adopt(module, ref), steps: [] }, this),
    }) as InvokeResponse;
    this.#refs.answered(module, route, response.lease);
    if (!response.ok) throw new RemoteError(response.error, module);
    return response.value;
  }

  release(handle: RefHandle): Promise<void> {
    return this.#refs.release(handle);
  }

  /** Sends pending releases and the last statistics, stops timers. Further calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const { placement } = this.#options;
    placement.close();
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
