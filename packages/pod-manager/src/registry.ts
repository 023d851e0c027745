/**
 * The configured modules and what runs for them: finds a module's spec, makes sure a server is
 * ready (waiting for a cold start, single-flight through the backend), forwards calls and counts
 * them.
 */
import { Code, type ServerStats, SpliceError } from '@splice-orc/protocol';

import type { Backend, ModuleStatus } from './backends/backend.js';
import type { Config, ModuleSpec } from './config.js';
import { ServiceError } from './errors.js';
import { type Invoker, neverDelivered } from './invoker.js';

/** A module as `GET /modules` shows it. */
export interface ModuleView extends ModuleStatus {
  name: string;
  package: string;
  loadType: ModuleSpec['loadType'];
  /** Calls answered by its servers since the pod-manager started. */
  callsServed: number;
  /** What the ready server holds now (sessions, objects behind references, calls in flight). */
  server?: ServerStats | undefined;
}

/** Options of one forwarded call. */
export interface ForwardOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** Result of a forwarded call. */
export interface ForwardResult {
  payload: Buffer;
  /** ms spent waiting for the module to start; undefined when a server was ready. */
  coldStartMs: number | undefined;
}

/** Modules, their servers and the calls to them. */
export class ModuleRegistry {
  readonly #calls = new Map<string, number>();

  constructor(
    readonly config: Config,
    readonly backend: Backend,
    readonly invoker: Invoker,
  ) {}

  /** The module's spec, or MODULE_NOT_FOUND. */
  spec(name: string): ModuleSpec {
    const spec = this.config.modules.get(name);
    if (!spec) {
      const known = [...this.config.modules.keys()].join(', ') || 'none';
      throw new ServiceError('MODULE_NOT_FOUND', `module '${name}' is not configured (configured: ${known})`);
    }
    return spec;
  }

  /** Starts the module if needed and resolves once a server is ready. */
  async load(name: string, signal?: AbortSignal): Promise<ModuleView> {
    await this.backend.start(this.spec(name), { signal });
    return this.inspect(name);
  }

  /** Stops the module's servers. */
  async unload(name: string): Promise<ModuleView> {
    this.spec(name);
    await this.backend.stop(name);
    return this.view(name);
  }

  /** Forwards an encoded program; starts the module first if no server runs. */
  async forward(name: string, payload: Uint8Array, options: ForwardOptions): Promise<ForwardResult> {
    const spec = this.spec(name);
    const started = Date.now();
    const wasReady = this.backend.status(name).state === 'ready';
    let endpoint = await this.backend.start(spec, { signal: options.signal });
    const coldStartMs = wasReady ? undefined : Date.now() - started;
    let result: Buffer;
    try {
      result = await this.invoker.invoke(endpoint, payload, options);
    } catch (error) {
      // A server that died between calls refuses the connection: the call never ran, so it is
      // safe to send it once more to the restarted server.
      if (!(error instanceof SpliceError) || error.code !== Code.UNAVAILABLE) throw error;
      const gone = await this.backend.reportUnreachable(name, endpoint);
      if (!gone) throw error;
      if (!neverDelivered(error)) {
        throw new SpliceError(
          Code.UNAVAILABLE,
          `the module-server of ${name} went away during the call, which may or may not have run (${error.message}); the next call goes to a restarted server`,
          { cause: error },
        );
      }
      endpoint = await this.backend.start(spec, { signal: options.signal });
      result = await this.invoker.invoke(endpoint, payload, options);
    }
    this.#calls.set(name, (this.#calls.get(name) ?? 0) + 1);
    return { payload: result, coldStartMs };
  }

  /** One module's view. */
  view(name: string): ModuleView {
    const spec = this.spec(name);
    return {
      name,
      package: spec.package,
      loadType: spec.loadType,
      ...this.backend.status(name),
      callsServed: this.#calls.get(name) ?? 0,
    };
  }

  /** One module's view with what its ready server reports (asked with a short deadline). */
  async inspect(name: string): Promise<ModuleView> {
    const view = this.view(name);
    if (view.state !== 'ready' || !view.endpoint) return view;
    const server = await this.invoker.stats(view.endpoint, { timeoutMs: 2_000 }).catch(() => undefined);
    return { ...view, server };
  }

  /** Every configured module's view. */
  list(): ModuleView[] {
    return [...this.config.modules.keys()].map((name) => this.view(name));
  }
}
