/**
 * `connect()`: the entry point of the client SDK.
 */
import { bytesFromQuantity, Code, Rest, SpliceError } from '@splice-orc/protocol';
import { importFromApp } from './app-import.js';
import type { BatchLimits } from './http-link.js';
import { createJobs, type Jobs } from './jobs.js';
import { PlacementTracker } from './placement.js';
import { nodeOf } from './remote-proxy.js';
import { type CallOptions, type IterateOptions, Session } from './session.js';

import { createTransport, type Transport } from './transport.js';
import type { Remote } from './types.js';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The pod-manager's URL. Default: POD_MANAGER_URL from the environment, else http://127.0.0.1:8000. */
  url?: string;
  /** Default deadline of each call, ms, including a cold start. Default 30 000. */
  timeoutMs?: number;
  /** Keep-alive connections to the pod-manager. Default 16. */
  connections?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Bearer token of the pod-manager. Default: SPLICE_AUTH_TOKEN from the environment. */
  token?: string;
  /**
   * Imports a module that the policy places local (run in this process). Default: resolved as the
   * app would, from its entry point, else its working directory (app-import.ts).
   */
  importModule?: (name: string) => Promise<unknown>;
  /** Memory this client gives local modules: bytes or a quantity such as `512Mi`. Reported to the policy. */
  memoryBudget?: number | string;
  /** How often call statistics are reported to the pod-manager's policy, ms; 0 = never. Default 5 000. */
  reportIntervalMs?: number;
  /**
   * Auto-batching: calls to a module made while a request to it is in flight travel together in
   * one request (a lone call still goes at once). Default true; false sends every call on its own;
   * an object sets the bounds (`maxCalls`, default 128; `maxBytes`, default 1 MiB).
   */
  batch?: boolean | BatchLimits;
  /**
   * How `for await (const x of remote)` reads a remote iterator, generator or stream: `window`
   * items per request (default 64), the next window asked for while the current one is consumed
   * (`readAhead`, default true).
   */
  iterate?: IterateOptions;
  /**
   * Whether the long poll that carries callbacks a module keeps (event handlers, progress) keeps
   * the process alive. Default false: a script that is done exits without `close()`. Set it when
   * the app only waits for a module to call it back (`await new Promise((r) => em.on('done', r))`).
   */
  keepAliveForCallbacks?: boolean;
}

/** A connection to a pod-manager. */
export interface SpliceClient {
  /** The remote module, as a proxy: `await math.det(m)`. */
  // biome-ignore lint/suspicious/noExplicitAny: an untyped module is usable as is
  module<T = any>(name: string, options?: CallOptions): Remote<T>;
  /**
   * Sends a pending chain with options of its own: `await orc.call(math.det(m), { signal })`.
   * Resolves like awaiting the chain.
   */
  call<T>(chain: PromiseLike<T>, options: CallOptions): Promise<T>;
  /** Frees remote references now (they are also freed when garbage collected). */
  release(...refs: unknown[]): Promise<void>;
  /** The pod-manager's view of the configured modules. */
  modules(): Promise<unknown>;
  /** Batch jobs: map a module function over many inputs across replicas. */
  readonly jobs: Jobs;
  /** Releases what is pending and closes the connections. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  /** This client's session id, as module-servers see it. */
  readonly sessionId: string;
  /**
   * How many functions of the app modules can call now, over every module and replica: a function
   * stays callable until released, until the client closes, or until module code no longer holds it.
   */
  liveCallbacks(): number;
}

/** Connects to a pod-manager (lazily: nothing is sent before the first call). */
export function connect(urlOrOptions?: string | ConnectOptions, options: ConnectOptions = {}): SpliceClient {
  const opts = typeof urlOrOptions === 'string' ? { ...options, url: urlOrOptions } : { ...urlOrOptions };
  const url = opts.url ?? process.env.POD_MANAGER_URL ?? 'http://127.0.0.1:8000';
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const token = opts.token ?? (process.env.SPLICE_AUTH_TOKEN || undefined);
  const transport: Transport = createTransport(url, {
    connections: opts.connections,
    headers: opts.headers,
    token,
  });
  // Long polls for callbacks wait while the app lives: their own connections, which do not keep
  // the process alive unless asked to.
  const callbackTransport: Transport = createTransport(url, {
    connections: 4,
    headers: opts.headers,
    token,
    unref: !opts.keepAliveForCallbacks,
  });
  const placement = new PlacementTracker({
    transport,
    callbackTransport,
    importModule: opts.importModule ?? importFromApp,
    memoryBudget:
      typeof opts.memoryBudget === 'string' ? bytesFromQuantity(opts.memoryBudget) : opts.memoryBudget,
    reportIntervalMs: opts.reportIntervalMs ?? 5_000,
    timeoutMs,
    batch: opts.batch,
  });
  const session = new Session({ timeoutMs, placement, iterate: opts.iterate });
  const close = async () => {
    await session.close();
    await callbackTransport.close();
    await transport.close();
  };
  return {
    sessionId: session.id,
    liveCallbacks: () => session.liveCallbacks(),
    module: <T>(name: string, callOptions?: CallOptions) => session.root(name, callOptions) as Remote<T>,
    call: <T>(chain: PromiseLike<T>, callOptions: CallOptions) => {
      const node = nodeOf(chain);
      if (!node || node.steps.length === 0) {
        return Promise.reject(
          new SpliceError(Code.INVALID_ARGUMENT, 'call() takes a pending chain such as math.det(m)'),
        );
      }
      return session.run(node, callOptions) as Promise<T>;
    },
    release: async (...refs) => {
      await Promise.all(
        refs.map((ref) =>
          // A function passed as a callback: later calls of it fail in the module.
          typeof ref === 'function' && !nodeOf(ref)
            ? session.releaseCallback(ref as (...args: unknown[]) => unknown)
            : session.release(handleOf(ref)),
        ),
      );
    },
    modules: () => transport.json('GET', Rest.Paths.modules, { timeoutMs }),
    jobs: createJobs(transport, timeoutMs),
    close,
    [Symbol.asyncDispose]: close,
  };
}

function handleOf(ref: unknown) {
  const node = nodeOf(ref);
  if (!node?.base || node.steps.length > 0) {
    throw new SpliceError(
      Code.INVALID_ARGUMENT,
      'release() takes remote references (awaited results), not pending calls or plain values',
    );
  }
  return node.base;
}

export type { CallOptions };
