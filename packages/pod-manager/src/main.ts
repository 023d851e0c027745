/**
 * Starts the pod-manager: loads the config, builds the app, listens, and stops cleanly (every
 * module-server with it) on SIGTERM or SIGINT. The only place that calls `listen`.
 */
import { BlockList, isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';

/** How long a stopping pod-manager answers 503 on open connections before it closes idle ones, ms. */
const SHUTDOWN_LINGER_MS = 500;

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');
loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True for `localhost` and for loopback addresses; any other name counts as reachable from outside. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const address = host.replace(/^\[|\]$/g, '');
  const family = isIP(address);
  return family !== 0 && loopback.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Options of {@link startPodManager}. */

export interface StartOptions {
  configPath: string;
  /** Overrides config.server.host. */
  host?: string | undefined;
  /** Overrides config.server.port. */
  port?: number | undefined;
  /** Stop on SIGTERM/SIGINT. Default true. */
  handleSignals?: boolean;
}

/** Loads the config and listens; resolves with the app and the URL it serves. */
export async function startPodManager(options: StartOptions): Promise<{ app: FastifyInstance; url: string }> {
  const config = loadConfig(options.configPath);
  const app = await buildApp(config);
  let host = options.host ?? config.server.host;
  if (!config.server.auth_token && !isLoopback(host)) {
    app.log.warn(
      { requested: host },
      'no auth token configured (server.auth_token or SPLICE_AUTH_TOKEN): listening on 127.0.0.1 only',
    );
    host = '127.0.0.1';
  } else if (!config.server.auth_token) {
    app.log.info('no auth token configured: listening on loopback only, without authentication');
  }
  const port = options.port ?? config.server.port;
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  app.log.info(
    { url, modules: [...config.modules.keys()], backend: config.server.backend },
    'pod-manager ready',
  );
  if (options.handleSignals !== false) {
    const stop = (signal: string) => {
      app.log.info({ signal }, 'stopping');
      const { shutdown_grace_ms: grace, grace_ms: serverGrace } = config.server;
      // First no new work: every answer is 503 SHUTTING_DOWN (safe to resend) with Connection:
      // close, so clients in the middle of using a kept-alive connection leave it by themselves.
      // Closing idle connections at once would race a request a client is writing on one.
      app.beginShutdown();
      const linger = Math.min(SHUTDOWN_LINGER_MS, grace);
      // Calls in flight get the grace period; then their connections go, and the close goes on.
      setTimeout(() => app.server.closeAllConnections(), grace).unref();
      // Whatever still hangs after module-servers had their own grace (and the SIGKILL after it).
      setTimeout(() => process.exit(1), grace + serverGrace + 5_000).unref();
      setTimeout(() => {
        app.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      }, linger);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  }
  return { app, url };
}
