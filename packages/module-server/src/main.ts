#!/usr/bin/env node
/**
 * Entry point of a module-server process, configured by environment (see environment.ts), as the
 * pod-manager (local processes) and the container image (SERVICE_TYPE=module_service) start it.
 *
 * It prints one JSON log line `{"msg":"listening","port":N,"callbackPort":M,...}` and, when started
 * with an IPC channel, sends `{type:'listening', port, callbackPort, serverId}` to its parent; it exits when that parent goes.
 * Unless SPLICE_CODE_GENERATION=allow, it refuses to start in a process that can compile strings:
 * start it with `node --disallow-code-generation-from-strings`.
 */
import { randomBytes } from 'node:crypto';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { type CallbackRelay, startCallbackRelay } from './callback-relay.js';
import { codeGenerationDisallowed, NO_CODE_GENERATION_FLAG, parseEnvironment } from './environment.js';

/** Whether this server runs under Node's permission model (an isolated local server). */
const isolated = Boolean((process as { permission?: unknown }).permission);

/**
 * The callback relay's thread is started first, so that it boots while this thread imports the
 * server and then the module (about 100 ms that would otherwise add to every cold start).
 */
const require = createRequire(import.meta.url);
const early = startRelayEarly();
lockWorkerThreads();
const { pino } = await import('pino');
const { createModuleServer } = await import('./server.js');

const log = pino({ name: 'module-server', base: { pid: process.pid, module: process.env.MODULE_NAME } });

/**
 * Under the permission model (an isolated local server) the server needs `--allow-worker` for its
 * relay, but a worker that module code started with `execArgv: []` would run outside the model.
 * Once the relay's thread exists, the Worker class is taken away from module code: every way to it
 * (`import`, `require`, `process.getBuiltinModule`) gives a constructor that refuses; the original
 * is held only by the relay's closure, and `process.binding` is refused by the model itself.
 * `module.register` is refused too: Node runs loader hooks on a worker of its own, which it
 * announces (the `process` 'worker' event, the `worker_threads` diagnostics channel) and whose
 * `worker_threads` is not locked. This guard is JavaScript and cannot be complete (module code
 * shares this process's prototypes with the server): what holds a thread that gets past it is the
 * kernel's Landlock domain the pod-manager starts isolated servers in (pod-manager isolation.ts).
 */
function lockWorkerThreads(): void {
  if (!isolated) return;
  const refuse = (what: string) =>
    function refused(): never {
      throw new Error(`module code may not ${what} in an isolated module-server`);
    };
  const threads = require('node:worker_threads') as { Worker: unknown };
  Object.defineProperty(threads, 'Worker', {
    value: refuse('start worker threads'),
    writable: false,
    configurable: false,
  });
  const modules = require('node:module') as { register: unknown };
  Object.defineProperty(modules, 'register', {
    value: refuse('register module loader hooks'),
    writable: false,
    configurable: false,
  });
  syncBuiltinESMExports();
}

function startRelayEarly(): { relay: CallbackRelay; serverId: string } | undefined {
  try {
    const env = parseEnvironment(process.env);
    const serverId = env.serverId || randomBytes(6).toString('hex');
    const relay = startCallbackRelay({
      secret: env.secret,
      host: env.host,
      port: env.callbackPort,
      serverId,
      maxMessageBytes: env.maxMessageBytes,
    });
    return { relay, serverId };
  } catch {
    return undefined; // main() reports what is wrong with the environment
  }
}

/** How long a server started with SPLICE_SECRET_FROM_PARENT waits for its secret. */
const SECRET_WAIT_MS = 10_000;

async function main(): Promise<void> {
  // From the first line: a parent that dies while the module still imports must not leave it running.
  watchForStop();
  const env = parseEnvironment(process.env);
  // Nothing the module could read later: the secret is in this closure only.
  delete process.env.SPLICE_SERVER_SECRET;
  if (!env.codeGeneration && !codeGenerationDisallowed()) {
    throw new Error(
      `module code could compile strings: start node with ${NO_CODE_GENERATION_FLAG}, or set SPLICE_CODE_GENERATION=allow for a module that needs eval or new Function`,
    );
  }
  const secret = env.secret ?? (await secretFromParent());
  // Isolated: the relay's worker has said all it will say (its 'listening' message) before module
  // code loads, so that module code never sees it emit an event (the object would lead to the
  // original Worker class).
  if (isolated && early) await early.relay.listening.catch(() => {});
  const server = await createModuleServer({
    moduleName: env.moduleName,
    resolveFrom: env.resolveFrom,
    host: env.host,
    port: env.port,
    callbackPort: env.callbackPort,
    callbackTimeoutMs: env.callbackTimeoutMs,
    maxMessageBytes: env.maxMessageBytes,
    leaseMs: env.leaseMs,
    serverId: env.serverId,
    secret,
    limits: env.limits,
    ...(early ? { serverId: early.serverId, relay: early.relay } : {}),
  });
  running = { server, graceMs: env.graceMs };
  const { port, callbackPort, serverId } = server;
  log.info({ port, callbackPort, serverId }, 'listening');
  process.send?.({ type: 'listening', port, callbackPort, serverId });
}

/**
 * The secret, asked of the parent over IPC (never through the environment, which other processes
 * of the same user could read in /proc): `{type: 'secret-request'}` is answered with
 * `{type: 'secret', secret}`. Asked, not awaited: a message sent before this process listens is lost.
 */
function secretFromParent(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (!process.send) return reject(new Error('SPLICE_SECRET_FROM_PARENT=1 needs an IPC channel'));
    const timer = setTimeout(
      () => reject(new Error(`no secret from the parent within ${SECRET_WAIT_MS} ms`)),
      SECRET_WAIT_MS,
    );
    const onMessage = (m: { type?: string; secret?: unknown }) => {
      if (m?.type !== 'secret') return;
      clearTimeout(timer);
      process.off('message', onMessage);
      if (typeof m.secret === 'string') resolve(m.secret);
      else reject(new Error('the parent sent a secret that is not a string'));
    };
    process.on('message', onMessage);
    process.send({ type: 'secret-request' });
  });
}

/** The server once it listens: a stop drains it; before that, a stop ends the process at once. */
let running: { server: { close(graceMs: number): Promise<void> }; graceMs: number } | undefined;
let stopping = false;

function stop(reason: string): void {
  if (stopping) return;
  stopping = true;
  log.info({ reason, listening: running !== undefined }, 'stopping');
  if (!running) process.exit(0);
  running.server.close(running.graceMs).then(() => process.exit(0));
}

function watchForStop(): void {
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A parent that dies (even by SIGKILL) closes the IPC channel: never outlive it as an orphan.
  process.on('disconnect', () => stop('parent went away'));
  if (process.send && !process.connected) stop('parent went away');
}

// Module code runs inside this process: its stray failures are logged, never fatal.
process.on('unhandledRejection', (reason) =>
  log.error({ err: reason }, 'unhandled rejection in module code'),
);
process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception in module code'));

main().catch((err: unknown) => {
  log.fatal({ err }, 'module-server failed to start');
  process.send?.({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  // A moment for the log line and the IPC message to leave; whatever an embedder set meanwhile, 1.
  setTimeout(() => process.exit(1), 100);
});
