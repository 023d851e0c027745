/**
 * Starts the pod-manager: loads the config, builds the app, listens, and stops cleanly (every
 * module-server with it) on SIGTERM or SIGINT. The only place that calls `listen`.
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
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
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  }
  return { app, url };
}
