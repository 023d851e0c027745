/**
 * One module-server process of the local backend, and the slot it lives in: a process that dies is
 * replaced in the same slot with backoff, until the slot is stopped.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { environmentFor, NO_CODE_GENERATION_FLAG } from '@splice-orc/module-server/environment';
import { createModuleClient, withDeadline } from '@splice-orc/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import type { ModuleState, ReadyReplica, ReplicaStatus, StartOptions } from './backend.js';
import { installOutput } from './install-progress.js';
import { installModule } from './installer.js';
import { childEnv, isolationFlags, landlockLaunch, serverEntry } from './isolation.js';
import { installPythonModule, venvPython } from './python-installer.js';

/** Options of the local backend, shared by its replicas. */
export interface LocalBackendOptions {
  cacheDir: string;
  /** Longest install + start, ms. */
  startTimeoutMs: number;
  leaseMs: number;
  maxPayloadBytes: number;
  graceMs: number;
  /** Health checks of ready servers; a server failing `failures` in a row is restarted. */
  liveness?: { intervalMs: number; failures: number };
  log: FastifyBaseLogger;
  /**
   * Run module-servers under Node's permission model (isolation.ts): they read only their install
   * folder and the runtime, write nothing, and start no process or worker.
   */
  isolate?: boolean;
  /** Python 3.10+ that makes the environments of Python modules. Default python3. */
  python?: string;
  /** pip's --index-url for Python modules; default PyPI. */
  pythonIndexUrl?: string | undefined;
  /** Most module-server processes at once, over all modules (default: no limit). */
  maxServers?: number;
  /** Limits of each server's reference table. */
  limits?: { maxObjectsPerSession: number; maxObjects: number; maxSessions: number };
  /** Called when an endpoint stops being served, so clients of it can be dropped. */
  onEndpointGone?: (endpoint: string) => void;
}

/** A server that stayed up this long is healthy again: its next crash restarts without delay. */
const STABLE_MS = 30_000;
const MAX_BACKOFF_MS = 10_000;
const OUTPUT_LINES = 30;

/** A slot for one module-server process. */
export class Replica {
  #state: ModuleState = 'absent';
  #serverId: string | undefined;
  /** The running server's credential: made here, given to it over IPC, known to no one else. */
  #secret: string | undefined;
  #draining = false;
  #endpoint: string | undefined;
  /** Port of the server's callback endpoint, when it has one of its own (Node servers). */
  #callbackPort: number | undefined;
  #startedAt: number | undefined;
  #restarts = 0;
  #crashes = 0;
  #reason: string | undefined;
  #child: ChildProcess | undefined;
  #ready: Promise<string> | undefined;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #cancelRestart: (() => void) | undefined;
  readonly #output: string[] = [];
  readonly #log: FastifyBaseLogger;

  constructor(
    readonly spec: ModuleSpec,
    readonly options: LocalBackendOptions,
    /** Id shown until the server reports its own. */
    readonly placeholder: string,
  ) {
    this.#log = options.log.child({ module: spec.name });
  }

  start(options: StartOptions = {}): Promise<string> {
    if (this.#state === 'ready' && this.#endpoint) return Promise.resolve(this.#endpoint);
    if (!this.#ready || this.#state === 'failed' || this.#state === 'absent' || this.#state === 'stopping') {
      this.#ready = this.#boot();
      this.#ready.catch(() => {}); // callers see the rejection; an unwatched restart must not crash us
    }
    return withDeadline(this.#ready, { signal: options.signal, onTimeout: () => new Error('no deadline') });
  }

  status(): ReplicaStatus {
    return {
      id: this.#serverId ?? this.placeholder,
      state: this.#draining ? 'draining' : this.#state,
      endpoint: this.#state === 'ready' ? this.#endpoint : undefined,
      pid: this.#child?.pid,
      started_at: this.#startedAt === undefined ? undefined : new Date(this.#startedAt).toISOString(),
      reason: this.#reason,
      progress: this.#state === 'installing' ? installOutput(this.spec.name) : undefined,
    };
  }

  /** The server's instance id and endpoint while it takes calls. */
  get serving(): ReadyReplica | undefined {
    if (this.#state !== 'ready' || this.#draining || !this.#endpoint || !this.#serverId || !this.#secret)
      return undefined;
    const callbackEndpoint = this.#callbackPort ? `127.0.0.1:${this.#callbackPort}` : undefined;
    return { id: this.#serverId, endpoint: this.#endpoint, secret: this.#secret, callbackEndpoint };
  }

  /** Dead servers replaced in this slot. */
  get restarts(): number {
    return this.#restarts;
  }

  get state(): ModuleState {
    return this.#state;
  }

  /** Takes the slot out of routing, then stops it: calls in flight finish within the grace period. */
  async drain(): Promise<void> {
    this.#draining = true;
    await this.stop();
  }

  async reportUnreachable(endpoint: string): Promise<boolean> {
    if (endpoint !== this.#endpoint) return true; // already replaced
    const child = this.#child;
    if (!child) return true;
    if (child.exitCode !== null || child.signalCode !== null) return true;
    // The exit may not have been reported yet: give the event loop a moment to deliver it.
    const exited = once(child, 'exit').then(() => true);
    const timeout = new Promise<boolean>((r) => setTimeout(() => r(false), 500).unref());
    return Promise.race([exited, timeout]);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    this.#cancelRestart?.();
    this.#cancelRestart = undefined;
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.#state = 'stopping';
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), this.options.graceMs + 2_000);
      await exited;
      clearTimeout(killer);
    }
    this.#gone();
    this.#state = 'absent';
    this.#reason = undefined;
  }

  async #boot(): Promise<string> {
    this.#stopping = false;
    this.#state = 'installing';
    this.#reason = undefined;
    const deadline = Date.now() + this.options.startTimeoutMs;
    try {
      const dir = await installFor(this.spec, this.options);
      this.#checkNotStopped();
      this.#state = 'starting';
      const endpoint = await this.#spawn(dir, deadline);
      this.#state = 'ready';
      this.#endpoint = endpoint;
      this.#startedAt = Date.now();
      this.#log.info({ endpoint, pid: this.#child?.pid }, 'module-server ready');
      this.#watch(endpoint);
      return endpoint;
    } catch (error) {
      if (this.#stopping) {
        // Whatever broke, it broke because the start was stopped: say so.
        this.#state = 'absent';
        throw stopped(this.spec.name);
      }
      this.#state = 'failed';
      this.#reason = error instanceof Error ? error.message : String(error);
      this.#log.warn({ reason: this.#reason }, 'module failed to start');
      throw error;
    }
  }

  async #spawn(dir: string, deadline: number): Promise<string> {
    this.#output.length = 0;
    const secret = randomBytes(24).toString('base64url');
    const env = environmentFor({
      moduleName: this.spec.name,
      // A Python module's environment holds it; a Node module is resolved from its install folder.
      resolveFrom: this.spec.runtime === 'python' ? undefined : dir,
      host: '127.0.0.1',
      port: 0,
      secretFromParent: true,
      leaseMs: this.options.leaseMs,
      maxMessageBytes: this.options.maxPayloadBytes,
      graceMs: this.options.graceMs,
      limits: this.options.limits,
      codeGeneration: this.spec.codeGeneration,
    });
    const { command, args, extraEnv } = launchFor(this.spec, dir, this.options);
    const child = spawn(command, args, {
      env: { ...childEnv(), ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    // The secret goes over IPC when the server asks: never in an environment /proc would show.
    child.on('message', (m: { type?: string }) => {
      // A child that dies meanwhile closes the channel: the send fails, and the exit is handled.
      if (m?.type === 'secret-request' && child.connected) child.send({ type: 'secret', secret }, () => {});
    });
    // Spawn and IPC failures end in 'exit' too; an 'error' without a listener would end the pod-manager.
    child.on('error', (error) => this.#log.warn({ err: error }, 'module-server process error'));
    this.#secret = secret;
    this.#child = child;
    this.#capture(child);
    child.once('exit', (code, signal) => this.#onExit(child, code, signal));
    try {
      const port = await this.#listening(child, deadline);
      const endpoint = `127.0.0.1:${port}`;
      await this.#serving(endpoint, deadline);
      this.#checkNotStopped();
      return endpoint;
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
  }

  #listening(child: ChildProcess, deadline: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          reject(
            new ServiceError(
              'START_TIMEOUT',
              `${this.spec.name} did not start within ${this.options.startTimeoutMs} ms${this.#lastOutput()}`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const done = () => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      const onMessage = (m: {
        type?: string;
        port?: number;
        callbackPort?: number;
        serverId?: string;
        message?: string;
      }) => {
        if (m?.type === 'listening' && typeof m.port === 'number') {
          this.#serverId = m.serverId;
          this.#callbackPort = typeof m.callbackPort === 'number' ? m.callbackPort : undefined;
          done();
          resolve(m.port);
        }
      };
      const onExit = (code: number | null, signal: string | null) => {
        done();
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        reject(
          new ServiceError(
            'MODULE_START_FAILED',
            `module-server for ${this.spec.name} ${how} before it was ready${this.#lastOutput()}`,
          ),
        );
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
    });
  }

  async #serving(endpoint: string, deadline: number): Promise<void> {
    const client = createModuleClient(endpoint);
    try {
      const status = await client.health({ timeoutMs: Math.max(1, deadline - Date.now()) });
      if (status !== 'SERVING') {
        throw new ServiceError(
          'MODULE_START_FAILED',
          `module-server for ${this.spec.name} reports ${status}`,
        );
      }
    } finally {
      client.close();
    }
  }

  #onExit(child: ChildProcess, code: number | null, signal: string | null): void {
    if (child !== this.#child) return;
    const wasReady = this.#state === 'ready';
    const upFor = this.#startedAt === undefined ? 0 : Date.now() - this.#startedAt;
    this.#gone();
    if (this.#stopping || !wasReady) return;
    this.#crashes = upFor > STABLE_MS ? 1 : this.#crashes + 1;
    this.#restarts++;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** (this.#crashes - 1));
    this.#state = 'starting';
    this.#reason = `module-server exited (${signal ?? `code ${code}`}); restarting in ${delay} ms${this.#lastOutput()}`;
    this.#log.warn({ code, signal, delay }, 'module-server died; restarting');
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#restartTimer = setTimeout(resolve, delay);
      // stop() during the backoff must settle the calls that wait for this restart.
      this.#cancelRestart = () => reject(stopped(this.spec.name));
    }).then(() => this.#boot());
    this.#ready.catch(() => {});
  }

  /** Checks a ready server's health periodically; kills it when it stops answering. */
  #watch(endpoint: string): void {
    const { intervalMs = 0, failures = 3 } = this.options.liveness ?? {};
    const child = this.#child;
    if (intervalMs <= 0 || !child) return;
    const client = createModuleClient(endpoint);
    let failed = 0;
    let checking = false;
    const timer = setInterval(async () => {
      if (checking) return;
      checking = true;
      const ok = await client.health({ timeoutMs: Math.min(intervalMs, 5_000) }).then(
        (status) => status === 'SERVING',
        () => false,
      );
      checking = false;
      failed = ok ? 0 : failed + 1;
      if (failed >= failures && child === this.#child) {
        this.#log.warn({ pid: child.pid, failed }, 'module-server does not answer health checks; killing it');
        child.kill('SIGKILL');
      }
    }, intervalMs).unref();
    child.once('exit', () => {
      clearInterval(timer);
      client.close();
    });
  }

  #gone(): void {
    if (this.#endpoint) this.options.onEndpointGone?.(this.#endpoint);
    this.#child = undefined;
    this.#endpoint = undefined;
    this.#startedAt = undefined;
    this.#serverId = undefined;
    this.#secret = undefined;
  }

  #checkNotStopped(): void {
    if (this.#stopping) throw stopped(this.spec.name);
  }

  #capture(child: ChildProcess): void {
    for (const [stream, level] of [
      [child.stdout, 'debug'],
      [child.stderr, 'warn'],
    ] as const) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.#output.push(line);
        if (this.#output.length > OUTPUT_LINES) this.#output.shift();
        this.#log[level]({ pid: child.pid, out: line }, 'module-server output');
      });
    }
  }

  #lastOutput(): string {
    const lines = this.#output.slice(-10);
    return lines.length ? `; last output:\n${lines.join('\n')}` : '';
  }
}

function stopped(name: string): ServiceError {
  return new ServiceError(
    'MODULE_STOPPED',
    `${name} was stopped (unload, scale-down or config change) while the call waited for it`,
  );
}

/** Installs what the module needs: npm into a folder, or a virtual environment for Python. */
export function installFor(spec: ModuleSpec, options: LocalBackendOptions): Promise<string> {
  const common = { cacheDir: options.cacheDir, timeoutMs: options.startTimeoutMs };
  return spec.runtime === 'python'
    ? installPythonModule(spec, {
        ...common,
        python: options.python ?? 'python3',
        indexUrl: options.pythonIndexUrl,
      })
    : installModule(spec, common);
}

let warnedNoLandlock = false;

/** Said once: isolated Node servers run under the permission model alone. */
function warnNoLandlock(options: LocalBackendOptions): void {
  if (warnedNoLandlock) return;
  warnedNoLandlock = true;
  options.log.warn(
    `${options.python ?? 'python3'} was not found: isolated Node module-servers run under Node's permission model alone, without the Landlock confinement that holds a thread escaping it (install Python 3, or set server.python)`,
  );
}

/**
 * How a module's server starts: the Node module-server under Node's permission model and without
 * code generation from strings, or the Python module-server in the module's environment, confined
 * by Landlock (SPLICE_ISOLATE). Either way over an IPC channel, on which it asks for its secret.
 */
function launchFor(
  spec: ModuleSpec,
  dir: string,
  options: LocalBackendOptions,
): { command: string; args: string[]; extraEnv: Record<string, string> } {
  if (spec.runtime === 'python') {
    return {
      command: venvPython(dir),
      args: ['-m', 'splice_module_server'],
      extraEnv: options.isolate ? { SPLICE_ISOLATE: '1' } : {},
    };
  }
  const nodeArgs = [
    ...(options.isolate ? isolationFlags(dir) : []),
    ...(spec.codeGeneration ? [] : [NO_CODE_GENERATION_FLAG]),
    serverEntry,
  ];
  const confined = options.isolate ? landlockLaunch(options.python ?? 'python3', dir, nodeArgs) : undefined;
  if (options.isolate && !confined) warnNoLandlock(options);
  return confined
    ? { ...confined, extraEnv: {} }
    : { command: process.execPath, args: nodeArgs, extraEnv: {} };
}
