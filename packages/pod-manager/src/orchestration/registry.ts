/**
 * The configured modules and what runs for them: finds a module's spec, makes sure a server is
 * ready (calls that arrive during a cold start wait in a bounded queue), routes each call to a
 * replica (the one holding the call's references, else the least busy), forwards it and counts it.
 */
import {
  type BatchAnswer,
  Code,
  type Rest,
  type ServerStats,
  SpliceError,
  splitBatch,
  withBatchIndex,
} from '@splice-orc/protocol';
import type { Backend, ModuleStatus, ReadyReplica, ReplicaUsage } from '../backends/backend.js';
import {
  type Config,
  ConfigError,
  installChanged,
  type ModuleSpec,
  parseModuleConfig,
  type RawModuleConfig,
} from '../config.js';
import { ServiceError, serviceErrorFrom } from '../errors.js';
import { ColdStartQueue, type WaitingRoom } from './cold-start.js';
import type { Invoker } from './invoker.js';

/**
 * How long a call whose server died under it waits for the platform to say why, ms: the kubelet
 * reports a killed container within a second or two; past this the call fails with its own error.
 */
const LOST_CALL_REPORT_WAIT_MS = 5_000;

/** A module as the registry sees it: `GET /modules` adds its mode and placement. */
export type ModuleView = Omit<Rest.ModuleView, 'mode' | 'placement' | 'placement_reason' | 'usage'>;

/** What a runtime config change asks of the rest of the pod-manager. */
export interface ConfigChangeHooks {
  /** Refuses a change the caller may not make (throws). */
  check: (next: ModuleSpec, before: ModuleSpec) => void;
  /** Saves the runtime configs (throws when it cannot). */
  persist: () => void;
  /** Called after each change of a module's spec, the restoring one included. */
  changed: () => void;
  /** Saving the restored config failed (the restored one is in force; the next save fixes the file). */
  persistFailed: (error: unknown) => void;
}

/** Options of one forwarded call. */
export interface ForwardOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Id of the replica that holds the call's references (the client's routing header). */
  route?: string | undefined;
  /** A replica to use if it is still ready (a part of a batch spread over replicas); else any. */
  prefer?: string | undefined;
}

/** Sends a call to a replica (Invoke or InvokeBatch). */
type Sender<T> = (replica: ReadyReplica, options: ForwardOptions) => Promise<T>;

/** Result of a forwarded call. */
export interface ForwardResult {
  payload: Buffer;
  /** ms spent waiting for the module to start; undefined when a server was ready. */
  coldStartMs: number | undefined;
}

/** What a finished call reports to observers (metrics, benchmark, tracking). */
export interface CallEvent {
  module: string;
  ms: number;
  /** ok; remote_error: the module threw; error: the call failed (refused, timed out, unavailable). */
  outcome: 'ok' | 'remote_error' | 'error';
  /**
   * `OK`, `REMOTE_ERROR`, or the error code of a failed call: the service's own (`QUEUE_FULL`,
   * `MODULE_START_FAILED`, ...) or a module-server's gRPC status name (`DEADLINE_EXCEEDED`): a
   * closed set, so a metric label may carry it.
   */
  code: string;
}

/** The code a call event carries for a failure. */
function failureCode(error: unknown): string {
  return serviceErrorFrom(error).code;
}

/** What happens to a module's calls, kept by the registry. */
interface Activity extends WaitingRoom {
  calls: number;
  inFlight: Map<string, number>;
  /** Where the next search for the least busy replica starts: ties go round. */
  turn: number;
  /** When each replica last received a call. */
  lastCallByReplica: Map<string, number>;
  lastCallAt: number;
}

/** Modules, their servers and the calls to them. */
export class ModuleRegistry {
  readonly #activity = new Map<string, Activity>();
  readonly #specs: Map<string, ModuleSpec>;
  readonly #overrides: Record<string, RawModuleConfig> = {};
  readonly #callListeners: Array<(event: CallEvent) => void> = [];
  readonly #coldStartListeners: Array<(module: string, ms: number) => void> = [];
  readonly #startFailureListeners: Array<(module: string, code: string) => void> = [];
  readonly #coldStarts: ColdStartQueue;
  /** Modules unloaded on purpose: keep-warm leaves them down until the next load or call. */
  readonly #unloaded = new Set<string>();
  /** Replicas held by batch jobs, per module and job: the autoscaler keeps at least their sum. */
  readonly #held = new Map<string, Map<string, number>>();

  readonly #backend: Backend;

  constructor(
    readonly config: Config,
    backend: Backend,
    readonly invoker: Invoker,
  ) {
    this.#backend = backend;
    this.#specs = new Map(config.modules);
    this.#coldStarts = new ColdStartQueue({
      backend,
      limit: config.server.queue_limit,
      timeoutMs: config.server.queue_timeout_ms,
      onColdStart: (module, ms) => {
        for (const listener of this.#coldStartListeners) listener(module, ms);
      },
      onStartFailed: (module, error) => this.#startFailed(module, error),
    });
  }

  /** Names of the configured modules. */
  names(): string[] {
    return [...this.#specs.keys()];
  }

  /** The module's spec, or MODULE_NOT_FOUND. */
  spec(name: string): ModuleSpec {
    const spec = this.#specs.get(name);
    if (!spec) {
      const known = this.names().join(', ') || 'none';
      throw new ServiceError('MODULE_NOT_FOUND', `module '${name}' is not configured (configured: ${known})`);
    }
    return spec;
  }

  /** Replaces a module's spec (runtime config change); `raw` is what was set, for persisting. */
  setSpec(spec: ModuleSpec, raw: RawModuleConfig): void {
    this.#specs.set(spec.name, spec);
    this.#overrides[spec.name] = raw;
  }

  /** A module's config as written (set at runtime, else from the file, defaults filled in). */
  rawConfig(name: string): RawModuleConfig {
    this.spec(name);
    return this.#overrides[name] ?? (this.config.raw.module_config[name] as RawModuleConfig);
  }

  /** Module configs set at runtime, by name. */
  overrides(): Record<string, RawModuleConfig> {
    return { ...this.#overrides };
  }

  /** Calls `listener` after every forwarded call. */
  onCall(listener: (event: CallEvent) => void): void {
    this.#callListeners.push(listener);
  }

  /** Calls `listener` after every cold start a call waited for, with its duration. */
  onColdStart(listener: (module: string, ms: number) => void): void {
    this.#coldStartListeners.push(listener);
  }

  /**
   * Calls `listener` when a start of the module fails (a cold start calls waited for, or a
   * keep-warm start), with the failure's code (`INSTALL_FAILED`, `MODULE_START_FAILED`, ...).
   */
  onStartFailure(listener: (module: string, code: string) => void): void {
    this.#startFailureListeners.push(listener);
  }

  #startFailed(module: string, error: unknown): void {
    const code = failureCode(error);
    for (const listener of this.#startFailureListeners) listener(module, code);
  }

  /** Starts the module if needed and resolves once a server is ready. */
  async load(name: string, signal?: AbortSignal): Promise<ModuleView> {
    this.#unloaded.delete(name);
    await this.#waitReady(this.spec(name), signal);
    return this.inspect(name);
  }

  /**
   * The names a caller can reach on the module's root (for `import { name }`): starts the module
   * if needed, then asks a ready server (its Stats), within `timeoutMs`.
   */
  async exports(name: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<string[]> {
    this.#unloaded.delete(name);
    await this.#waitReady(this.spec(name), options.signal);
    const [replica] = this.#backend.ready(name);
    if (!replica) throw new ServiceError('MODULE_STOPPED', `${name} was stopped before it could be asked`);
    return (await this.invoker.stats(replica, { timeoutMs: options.timeoutMs })).exports;
  }

  /** Stops the module's servers (each drains its calls in flight). */
  async unload(name: string): Promise<ModuleView> {
    this.spec(name);
    this.#unloaded.add(name);
    await this.#backend.stop(name);
    return this.view(name);
  }

  /** True for a module unloaded on purpose and not used since. */
  isUnloaded(name: string): boolean {
    return this.#unloaded.has(name);
  }

  /**
   * Replaces a module's config at runtime (`PUT /modules/:name/config`): validated like the file,
   * checked by `hooks.check`, installed first when what is installed changes (so a spec that cannot
   * be installed changes nothing), saved, then applied to running servers. When the backend cannot
   * apply it (the cluster refuses the new pod template), the old config stays, in memory and saved.
   */
  async changeConfig(name: string, input: unknown, hooks: ConfigChangeHooks): Promise<ModuleView> {
    const before = this.spec(name);
    let parsed: ReturnType<typeof parseModuleConfig>;
    try {
      parsed = parseModuleConfig(name, input, this.config.baseDir);
    } catch (error) {
      if (error instanceof ConfigError)
        throw new ServiceError('BAD_REQUEST', error.message, { extra: { problems: error.problems } });
      throw error;
    }
    hooks.check(parsed.spec, before);
    if (installChanged(parsed.spec, before)) await this.#backend.prepare(parsed.spec);
    const previous = this.rawConfig(name);
    this.setSpec(parsed.spec, parsed.raw);
    try {
      hooks.persist();
    } catch (error) {
      this.setSpec(before, previous);
      throw error;
    }
    hooks.changed();
    try {
      await this.#backend.reconfigure(parsed.spec, before);
    } catch (error) {
      // Unless another change came in meanwhile: that one is newer than both.
      if (this.spec(name) === parsed.spec) {
        this.setSpec(before, previous);
        try {
          hooks.persist();
        } catch (persistError) {
          hooks.persistFailed(persistError);
        }
        hooks.changed();
      }
      throw error;
    }
    return this.view(name);
  }

  /** The module's servers as the backend sees them. */
  status(name: string): ModuleStatus {
    return this.#backend.status(name);
  }

  /** The module's servers that take calls now. */
  ready(name: string): ReadyReplica[] {
    return this.#backend.ready(name);
  }

  /** CPU and memory of each of the module's servers. */
  usage(name: string): Promise<ReplicaUsage[]> {
    return this.#backend.usage(name);
  }

  /** Starts a server for a module that must be warm (the lifecycle loop's keep-warm). */
  keepWarm(spec: ModuleSpec): Promise<void> {
    return this.#backend.start(spec).catch((error: unknown) => {
      this.#startFailed(spec.name, error);
      throw error;
    });
  }

  /** Adds a server to a module (scale up). */
  addReplica(spec: ModuleSpec): Promise<void> {
    return this.#backend.addReplica(spec);
  }

  /**
   * A batch job holds `replicas` of the module for itself: until released, the lifecycle loop
   * counts them as wanted (it neither scales them down nor stops the module as idle).
   */
  holdReplicas(name: string, holder: string, replicas: number): void {
    let holders = this.#held.get(name);
    if (!holders) {
      holders = new Map();
      this.#held.set(name, holders);
    }
    holders.set(holder, replicas);
  }

  /** Releases what {@link holdReplicas} held. */
  releaseReplicas(name: string, holder: string): void {
    this.#held.get(name)?.delete(holder);
  }

  /** Replicas of the module held by batch jobs now. */
  heldReplicas(name: string): number {
    let total = 0;
    for (const n of this.#held.get(name)?.values() ?? []) total += n;
    return total;
  }

  /** Removes one server of a module (scale down, or a failed restart). */
  removeReplica(name: string, id: string): Promise<void> {
    return this.#backend.removeReplica(name, id);
  }

  /** Stops an idle module's servers; unlike unload, the next call starts it again. */
  stopIdle(name: string): Promise<void> {
    return this.#backend.stop(name);
  }

  /** Picks up what an earlier pod-manager left running (at start-up). */
  resume(): Promise<void> {
    return this.#backend.resume(this.names().map((name) => this.spec(name)));
  }

  /** Releases the backend (the local one stops every server it started). */
  close(): Promise<void> {
    return this.#backend.close();
  }

  /** Forwards an encoded program; starts the module first if no server runs. */
  async forward(name: string, payload: Uint8Array, options: ForwardOptions): Promise<ForwardResult> {
    let outcome: CallEvent['outcome'] = 'error';
    let code = 'INTERNAL';
    const started = performance.now();
    try {
      const { result, coldStartMs } = await this.#forward(name, 1, options, (replica, o) =>
        this.invoker.invoke(replica, payload, o),
      );
      [outcome, code] = result.threw ? ['remote_error', 'REMOTE_ERROR'] : ['ok', 'OK'];
      return { payload: result.payload, coldStartMs };
    } catch (error) {
      code = failureCode(error);
      throw error;
    } finally {
      this.#called(name, performance.now() - started, outcome, code);
    }
  }

  /**
   * Forwards a `callbacks` program (INVOKE.md 3.7) to the callback endpoint of the replica it names
   * (any ready one when it names none, starting the module if none runs). Not counted as a call:
   * it is the app collecting callback requests, which may wait for one up to its own deadline.
   */
  async forwardCallbacks(name: string, payload: Uint8Array, options: ForwardOptions): Promise<Buffer> {
    const { result } = await this.#forward(name, 0, options, (replica, o) =>
      this.invoker.exchange(
        { endpoint: replica.callbackEndpoint ?? replica.endpoint, secret: replica.secret },
        payload,
        o,
      ),
    );
    return result.payload;
  }

  /**
   * Forwards an `InvokeBatchRequest` of `count` programs as it is and hands each answer to
   * `onAnswer` as it arrives (each one counted as a call). Resolves with the cold start's wait when
   * the server has answered every program; rejects when the batch failed, after the answers that
   * did arrive (a program never answered counts as a failed call).
   */
  async forwardBatch(
    name: string,
    request: Uint8Array,
    count: number,
    options: ForwardOptions,
    onAnswer: (answer: BatchAnswer) => void,
  ): Promise<{ coldStartMs: number | undefined }> {
    // A batch for one replica (its references', or the one a job's worker uses) goes there whole.
    const ready = options.route || options.prefer ? [] : this.#backend.ready(name);
    if (ready.length < 2 || count < 2) return this.#forwardBatchTo(name, request, count, options, onAnswer);
    // Several replicas and calls that need none in particular: each replica takes a share, as the
    // calls would have spread had they come one by one.
    const parts = splitBatch(request, Math.min(ready.length, count));
    const outcomes = await Promise.allSettled(
      parts.map(({ request: sub, indices }, part) =>
        this.#forwardBatchTo(name, sub, indices.length, { ...options, prefer: ready[part]?.id }, (answer) => {
          const index = indices[answer.index] ?? answer.index;
          onAnswer({ ...answer, index, message: withBatchIndex(answer.message, index) });
        }),
      ),
    );
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    if (failures.length > 0) {
      // Never claim that nothing ran when one part may have.
      throw failures.find((f) => !(f instanceof SpliceError && f.safeToResend)) ?? failures[0];
    }
    const waits = outcomes.map((o) => (o.status === 'fulfilled' ? o.value.coldStartMs : undefined));
    return { coldStartMs: waits.find((w) => w !== undefined) };
  }

  async #forwardBatchTo(
    name: string,
    request: Uint8Array,
    count: number,
    options: ForwardOptions,
    onAnswer: (answer: BatchAnswer) => void,
  ): Promise<{ coldStartMs: number | undefined }> {
    const started = performance.now();
    const answered = new Set<number>();
    let code = 'INTERNAL';
    try {
      const { coldStartMs } = await this.#forward(name, count, options, (replica, o) =>
        this.invoker.invokeBatch(replica, request, o, (answer) => {
          answered.add(answer.index);
          const ms = performance.now() - started;
          if (answer.threw) this.#called(name, ms, 'remote_error', 'REMOTE_ERROR');
          else this.#called(name, ms, 'ok', 'OK');
          onAnswer(answer);
        }),
      );
      return { coldStartMs };
    } catch (error) {
      code = failureCode(error);
      throw error;
    } finally {
      for (let i = answered.size; i < count; i++)
        this.#called(name, performance.now() - started, 'error', code);
    }
  }

  #called(name: string, ms: number, outcome: CallEvent['outcome'], code: string): void {
    const activity = this.#activityOf(name);
    activity.calls++;
    activity.lastCallAt = Date.now();
    const event: CallEvent = { module: name, ms, outcome, code };
    for (const listener of this.#callListeners) listener(event);
  }

  /** Waits for a ready server (a cold start), then sends; `calls` is how many programs go. */
  async #forward<T>(
    name: string,
    calls: number,
    options: ForwardOptions,
    send: Sender<T>,
  ): Promise<{ result: T; coldStartMs: number | undefined }> {
    const spec = this.spec(name);
    this.#activityOf(name).lastCallAt = Date.now();
    this.#unloaded.delete(name);
    const started = performance.now();
    let coldStartMs: number | undefined;
    if (this.#backend.ready(name).length === 0) {
      await this.#waitReady(spec, options.signal);
      coldStartMs = Math.round(performance.now() - started);
    }
    return { result: await this.#send(spec, calls, options, send), coldStartMs };
  }

  async #send<T>(spec: ModuleSpec, calls: number, options: ForwardOptions, send: Sender<T>): Promise<T> {
    const deadline = Date.now() + options.timeoutMs;
    let replica = await this.#choose(spec, options);
    const sent = Date.now();
    try {
      return await this.#invoke(spec.name, replica, calls, () => send(replica, options));
    } catch (error) {
      // A server that died between calls refuses the connection: the call never ran, so it is
      // safe to send it once more to the restarted server.
      if (!(error instanceof SpliceError) || error.code !== Code.UNAVAILABLE) throw error;
      // One that died during the call: the platform may say why (killed past its memory limit).
      const why = error.safeToResend ? undefined : await this.#whyEnded(spec.name, replica.id, sent);
      if (why) {
        throw new SpliceError(
          Code.UNAVAILABLE,
          `the module-server of ${spec.name} ended during the call: ${why}; the next call goes to a restarted server`,
          { cause: error },
        );
      }
      const gone = await this.#backend.reportUnreachable(spec.name, replica.endpoint);
      if (!gone) throw error;
      if (!error.safeToResend || options.route) {
        throw new SpliceError(
          Code.UNAVAILABLE,
          `the module-server of ${spec.name} went away during the call, which may or may not have run (${error.message}); the next call goes to a restarted server`,
          { cause: error },
        );
      }
      replica = await this.#choose(spec, { ...options, route: undefined });
      const timeoutMs = Math.max(1, deadline - Date.now());
      return this.#invoke(spec.name, replica, calls, () => send(replica, { ...options, timeoutMs }));
    }
  }

  /** What the backend says ended the replica since `since`; never fails the call on its own. */
  #whyEnded(name: string, id: string, since: number): Promise<string | undefined> {
    return (
      this.#backend.whyEnded?.(name, id, { since, waitMs: LOST_CALL_REPORT_WAIT_MS }) ??
      Promise.resolve(undefined)
    ).catch(() => undefined);
  }

  /** A replica for the call, waiting for one when the last ready one has just gone. */
  async #choose(spec: ModuleSpec, options: ForwardOptions): Promise<ReadyReplica> {
    const replica = this.#pick(spec.name, options.route, options.prefer);
    if (replica) return replica;
    await this.#waitReady(spec, options.signal);
    const next = this.#pick(spec.name, undefined);
    if (!next) throw new ServiceError(Code.UNAVAILABLE, `no server of ${spec.name} is ready; try again`);
    return next;
  }

  /** Runs `send` against a replica, counting its `calls` programs in flight there meanwhile. */
  async #invoke<T>(name: string, replica: ReadyReplica, calls: number, send: () => Promise<T>): Promise<T> {
    const activity = this.#activityOf(name);
    const inFlight = activity.inFlight;
    inFlight.set(replica.id, (inFlight.get(replica.id) ?? 0) + calls);
    activity.lastCallByReplica.set(replica.id, Date.now());
    try {
      return await send();
    } finally {
      const left = (inFlight.get(replica.id) ?? calls) - calls;
      if (left > 0) inFlight.set(replica.id, left);
      else inFlight.delete(replica.id);
    }
  }

  /** The replica a call goes to: the one its references live on, else the least busy ready one. */
  #pick(name: string, route: string | undefined, prefer?: string): ReadyReplica | undefined {
    const ready = this.#backend.ready(name);
    const preferred = prefer === undefined ? undefined : ready.find((r) => r.id === prefer);
    if (preferred) return preferred;
    if (route) {
      const holder = ready.find((r) => r.id === route);
      if (!holder) {
        throw new ServiceError(
          'REPLICA_NOT_FOUND',
          `the module-server ${route} of ${name} that holds this call's references is gone (stopped, scaled down or restarted)`,
        );
      }
      return holder;
    }
    if (ready.length === 0) return undefined;
    const activity = this.#activityOf(name);
    const { inFlight } = activity;
    // Calls that arrive together are all picked before any is counted in flight: starting the
    // search one further each time spreads them instead of sending every one to the first replica.
    const start = activity.turn++ % ready.length;
    let best = ready[start] as ReadyReplica;
    for (let i = 1; i < ready.length; i++) {
      const r = ready[(start + i) % ready.length] as ReadyReplica;
      if ((inFlight.get(r.id) ?? 0) < (inFlight.get(best.id) ?? 0)) best = r;
    }
    return best;
  }

  /** Waits for a ready server in the bounded cold-start queue. */
  #waitReady(spec: ModuleSpec, signal?: AbortSignal): Promise<void> {
    if (this.#backend.ready(spec.name).length > 0) return Promise.resolve();
    return this.#coldStarts.wait(spec, this.#activityOf(spec.name), signal);
  }

  /** One module's view with what its ready servers report (asked with a short deadline). */
  async inspect(name: string): Promise<ModuleView> {
    const view = this.view(name);
    const stats = await this.replicaStats(name);
    if (stats.length === 0) return view;
    const server = { sessions: 0, objects: 0, in_flight: 0 };
    for (const s of stats) {
      server.sessions += s.sessions;
      server.objects += s.objects;
      server.in_flight += s.in_flight;
    }
    return { ...view, server };
  }

  /** What each ready replica reports; replicas that do not answer in time are left out. */
  async replicaStats(name: string): Promise<ServerStats[]> {
    const ready = this.#backend.ready(name);
    const answers = await Promise.all(
      ready.map((r) => this.invoker.stats(r, { timeoutMs: 2_000 }).catch(() => undefined)),
    );
    return answers.filter((s): s is ServerStats => s !== undefined);
  }

  /** One module's view. */
  view(name: string): ModuleView {
    const spec = this.spec(name);
    const status = this.#backend.status(name);
    const activity = this.#activityOf(name);
    const first = status.replicas.find((r) => r.state === 'ready');
    let inFlight = 0;
    for (const n of activity.inFlight.values()) inFlight += n;
    return {
      name,
      package: spec.package,
      load_type: spec.loadType,
      ...status,
      endpoint: first?.endpoint,
      pid: first?.pid,
      started_at: first?.started_at,
      calls_served: activity.calls,
      in_flight: inFlight,
      queued: activity.queued,
      last_call_at: activity.lastCallAt ? new Date(activity.lastCallAt).toISOString() : undefined,
    };
  }

  /** Calls in flight to a module now, per replica id. */
  inFlight(name: string): ReadonlyMap<string, number> {
    return this.#activityOf(name).inFlight;
  }

  /** When a replica last received a call (0 if never). */
  lastCallAt(name: string, replicaId: string): number {
    return this.#activityOf(name).lastCallByReplica.get(replicaId) ?? 0;
  }

  /** ms since the module's last call (Infinity if none). */
  idleFor(name: string): number {
    const last = this.#activityOf(name).lastCallAt;
    return last ? Date.now() - last : Number.POSITIVE_INFINITY;
  }

  /** Every configured module's view. */
  list(): ModuleView[] {
    return this.names().map((name) => this.view(name));
  }

  #activityOf(name: string): Activity {
    let activity = this.#activity.get(name);
    if (!activity) {
      activity = {
        calls: 0,
        inFlight: new Map(),
        turn: 0,
        lastCallByReplica: new Map(),
        queued: 0,
        lastCallAt: 0,
        coldStart: undefined,
      };
      this.#activity.set(name, activity);
    }
    return activity;
  }
}
