/**
 * Runs programs of modules placed local in this process, with the module-server's own runtime
 * (guard, executor, reference table), so the proxy API and its semantics (values by copy,
 * references, errors) do not change. Each module is imported once; its references carry an
 * instance id of this process, so calls on them stay here.
 */
import { randomBytes } from 'node:crypto';
import { Code, SpliceError, withDeadline } from '@splice-orc/protocol';
import { createInvocationHandler, type InvocationResult, ObjectTable, rootOf } from '@splice-orc/runtime';
import type { CallRecorder, Link, LinkCallOptions } from './link.js';

/** Options of {@link LocalLink}. */
export interface LocalLinkOptions {
  /** Imports a module for local placement. */
  importModule: (name: string) => Promise<unknown>;
  record: CallRecorder;
}

interface LocalHost {
  serverId: string;
  handle(payload: Uint8Array): Promise<InvocationResult>;
}

/** Modules imported into this process, and the link that runs their programs. */
export class LocalLink implements Link {
  readonly #hosts = new Map<string, Promise<LocalHost>>();
  readonly #ids = new Set<string>();
  readonly #options: LocalLinkOptions;

  constructor(options: LocalLinkOptions) {
    this.#options = options;
  }

  /** True when references of this instance id live in this process. */
  owns(serverId: string): boolean {
    return this.#ids.has(serverId);
  }

  /** Imports the module (once); rejects with FAILED_PRECONDITION when it cannot be imported here. */
  prepare(module: string, leaseMs: number): Promise<LocalHost> {
    let host = this.#hosts.get(module);
    if (!host) {
      host = this.#load(module, leaseMs);
      host.catch(() => this.#hosts.delete(module));
      this.#hosts.set(module, host);
    }
    return host;
  }

  async invoke(module: string, body: Uint8Array, options: LinkCallOptions): Promise<Uint8Array> {
    const host = await (this.#hosts.get(module) ?? this.prepare(module, 60_000));
    const started = performance.now();
    // A local call cannot be stopped, but its caller stops waiting at the deadline or on abort.
    const { payload } = await withDeadline(host.handle(body), {
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      onTimeout: () =>
        new SpliceError(
          Code.DEADLINE_EXCEEDED,
          `no answer from the local module within ${options.timeoutMs} ms`,
        ),
      onAbort: () => new SpliceError(Code.CANCELLED, 'the call was aborted'),
    });
    this.#options.record(module, 'local', performance.now() - started);
    return payload;
  }

  async #load(module: string, leaseMs: number): Promise<LocalHost> {
    let namespace: unknown;
    try {
      namespace = await this.#options.importModule(module);
    } catch (cause) {
      throw new SpliceError(
        Code.FAILED_PRECONDITION,
        `module ${module} is placed local but cannot be imported in this process (${(cause as Error).message}); install it in the app, pass connect({ importModule }), or set its load_type to remote`,
        { cause },
      );
    }
    const serverId = `local-${randomBytes(6).toString('hex')}`;
    const table = new ObjectTable({ leaseMs });
    table.startSweeping();
    this.#ids.add(serverId);
    const handle = createInvocationHandler({
      root: rootOf(namespace as Record<string, unknown>),
      table,
      serverId,
    });
    return { serverId, handle };
  }
}
