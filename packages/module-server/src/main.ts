#!/usr/bin/env node
/**
 * Entry point of a module-server process, configured by environment (see environment.ts), as the
 * pod-manager (local processes) and the container image (SERVICE_TYPE=module_service) start it.
 *
 * It prints one JSON log line `{"msg":"listening","port":N,...}` and, when started with an IPC
 * channel, sends `{type:'listening', port, serverId}` to its parent; it exits when that parent goes.
 * Unless SPLICE_CODE_GENERATION=allow, it refuses to start in a process that can compile strings:
 * start it with `node --disallow-code-generation-from-strings`.
 */
import { pino } from 'pino';
import {
  codeGenerationDisallowed,
  NO_CODE_GENERATION_FLAG,
  parseEnvironment,
  type ServerEnvironment,
} from './environment.js';
import { createModuleServer } from './server.js';

const log = pino({ name: 'module-server', base: { pid: process.pid, module: process.env.MODULE_NAME } });

/** How long a server started with SPLICE_SECRET_FROM_PARENT waits for its secret. */
const SECRET_WAIT_MS = 10_000;

async function main(): Promise<void> {
  const env = parseEnvironment(process.env);
  // Nothing the module could read later: the secret is in this closure only.
  delete process.env.SPLICE_SERVER_SECRET;
  if (!env.codeGeneration && !codeGenerationDisallowed()) {
    throw new Error(
      `module code could compile strings: start node with ${NO_CODE_GENERATION_FLAG}, or set SPLICE_CODE_GENERATION=allow for a module that needs eval or new Function`,
    );
  }
  const secret = env.secret ?? (await secretFromParent());
  const server = await createModuleServer({
    moduleName: env.moduleName,
    resolveFrom: env.resolveFrom,
    host: env.host,
    port: env.port,
    maxMessageBytes: env.maxMessageBytes,
    leaseMs: env.leaseMs,
    serverId: env.serverId,
    secret,
    limits: env.limits,
  });
  log.info({ port: server.port, serverId: server.serverId }, 'listening');
  process.send?.({ type: 'listening', port: server.port, serverId: server.serverId });
  handleStop(server, env);
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

function handleStop(server: { close(graceMs: number): Promise<void> }, env: ServerEnvironment): void {
  let stopping = false;
  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'stopping');
    server.close(env.graceMs).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A parent that dies (even by SIGKILL) closes the IPC channel: never outlive it as an orphan.
  process.on('disconnect', () => stop('parent went away'));
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
