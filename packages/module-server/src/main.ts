#!/usr/bin/env node
/**
 * Entry point of a module-server process. Configured by environment, as the pod-manager (local
 * processes) and the container image (SERVICE_TYPE=module_service) start it:
 *
 * | variable | meaning | default |
 * | --- | --- | --- |
 * | MODULE_NAME | module specifier to serve | required |
 * | MODULE_RESOLVE_FROM | directory whose node_modules holds it | this package's location |
 * | HOST | address to bind | 127.0.0.1 |
 * | PORT | port to bind, 0 = any free port | 50051 |
 * | SPLICE_MAX_MESSAGE_BYTES | largest payload either way | 16777216 |
 * | SPLICE_LEASE_MS | session lease | 60000 |
 * | SPLICE_GRACE_MS | how long in-flight calls may finish on SIGTERM | 5000 |
 * | SPLICE_SERVER_ID | id references carry (in a pod: the pod name) | random |
 *
 * It prints one JSON log line `{"msg":"listening","port":N,...}` and, when started with an IPC
 * channel, sends `{type:'listening', port, serverId}` to its parent; it exits when that parent goes.
 */
import { pino } from 'pino';
import { createModuleServer } from './server.js';

const log = pino({ name: 'module-server', base: { pid: process.pid, module: process.env.MODULE_NAME } });

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got '${raw}'`);
  }
  return value;
}

async function main(): Promise<void> {
  const moduleName = process.env.MODULE_NAME;
  if (!moduleName) throw new Error('MODULE_NAME is not set: name the module this server should serve');
  const graceMs = intFromEnv('SPLICE_GRACE_MS', 5_000);
  const server = await createModuleServer({
    moduleName,
    resolveFrom: process.env.MODULE_RESOLVE_FROM || undefined,
    host: process.env.HOST || '127.0.0.1',
    port: intFromEnv('PORT', 50051),
    maxMessageBytes: intFromEnv('SPLICE_MAX_MESSAGE_BYTES', 16 * 1024 * 1024),
    leaseMs: intFromEnv('SPLICE_LEASE_MS', 60_000),
    serverId: process.env.SPLICE_SERVER_ID,
  });
  log.info({ port: server.port, serverId: server.serverId }, 'listening');
  process.send?.({ type: 'listening', port: server.port, serverId: server.serverId });

  let stopping = false;
  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'stopping');
    server.close(graceMs).then(() => process.exit(0));
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
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
