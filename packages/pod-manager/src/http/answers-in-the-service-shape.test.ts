/**
 * Every error the pod-manager answers, Fastify's and Node's own included, is
 * `{error: {code, status, message}}` with a code from the table (regressions: Fastify's 503 body
 * during shutdown, its 414 and 400 bodies, 404 for a known path with another method, a query string
 * that made /healthz ask for the token).
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { parseConfig } from '../config.js';
import { errorTable } from '../errors.js';
import { isLoopback } from '../main.js';

const token = 'a-token-of-sixteen-chars-or-more';
const config = (server: Record<string, unknown> = {}) =>
  parseConfig({
    module_config: { calc: {} },
    server: { auth_token: token, state_file: '/tmp/splice-shape-test.json', ...server },
  });
const auth = { authorization: `Bearer ${token}` };

function expectServiceShape(body: unknown, code: keyof typeof errorTable): void {
  expect(body).toEqual({
    error: expect.objectContaining({ code, status: errorTable[code].grpc, message: expect.any(String) }),
  });
}

describe('answers in the service shape', () => {
  let app: Awaited<ReturnType<typeof buildApp>>;
  beforeAll(async () => {
    app = await buildApp(config(), { logger: false });
    await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await app.close();
  });

  it('405 with an Allow header for a known path asked with another method', async () => {
    const trace = await app.inject({ method: 'TRACE', url: '/healthz' });
    expect(trace.statusCode).toBe(405);
    expect(trace.headers.allow).toBe('GET, HEAD');
    expectServiceShape(trace.json(), 'METHOD_NOT_ALLOWED');
    const put = await app.inject({ method: 'PATCH', url: '/modules/calc', headers: auth });
    expect(put.statusCode).toBe(405);
    expect(put.headers.allow).toBe('DELETE, GET, HEAD');
  });

  it('404 ROUTE_NOT_FOUND for an unknown path', async () => {
    const answer = await app.inject({ method: 'GET', url: '/nowhere', headers: auth });
    expect(answer.statusCode).toBe(404);
    expectServiceShape(answer.json(), 'ROUTE_NOT_FOUND');
  });

  it('414 URI_TOO_LONG for a module name past the parameter limit', async () => {
    const answer = await app.inject({ method: 'GET', url: `/modules/${'a'.repeat(300)}`, headers: auth });
    expect(answer.statusCode).toBe(414);
    expectServiceShape(answer.json(), 'URI_TOO_LONG');
  });

  it('400 BAD_REQUEST for a URL that is not valid', async () => {
    const answer = await app.inject({ method: 'GET', url: '/modules/%E0%A4%A', headers: auth });
    expect(answer.statusCode).toBe(400);
    expectServiceShape(answer.json(), 'BAD_REQUEST');
  });

  it('431 and 400 from the HTTP parser itself, on the socket', async () => {
    const { port } = app.server.address() as { port: number };
    const raw = async (text: string) => {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      let out = '';
      socket.on('data', (chunk) => {
        out += chunk.toString();
      });
      socket.write(text);
      await once(socket, 'close');
      return { status: Number(out.slice(9, 12)), body: JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)) };
    };
    const big = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`);
    expect(big.status).toBe(431);
    expectServiceShape(big.body, 'HEADERS_TOO_LARGE');
    const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
    expect(garbage.status).toBe(400);
    expectServiceShape(garbage.body, 'BAD_REQUEST');
    // Methods a known path does not take, whether Fastify (QUERY, without a content type) or Node's
    // parser (BREW) meets them first: a 405 naming what the path takes.
    for (const method of ['QUERY', 'BREW']) {
      const answer = await raw(`${method} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(answer.status, method).toBe(405);
      expectServiceShape(answer.body, 'METHOD_NOT_ALLOWED');
    }
  });

  it('keeps health open whatever the query string, and everything else closed without the token', async () => {
    for (const url of ['/healthz', '/healthz?x=1', '/readyz?probe=kubelet', '/openapi.json?v=3']) {
      expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(200);
    }
    const denied = await app.inject({ method: 'GET', url: '/modules?healthz' });
    expect(denied.statusCode).toBe(401);
    expectServiceShape(denied.json(), 'UNAUTHENTICATED');
  });
});

describe('during shutdown', () => {
  it('answers 503 SHUTTING_DOWN marked safe to resend, with Connection: close, and a 503 readiness', async () => {
    const app = await buildApp(config(), { logger: false });
    let release = () => {};
    // Holds the close between "closing" and the listener's close, where late requests land.
    app.addHook('preClose', () => new Promise<void>((resolve) => (release = resolve)));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as { port: number };
    const closing = app.close();
    await new Promise((r) => setTimeout(r, 10));
    const answer = await fetch(`http://127.0.0.1:${port}/modules`, { headers: auth });
    expect(answer.status).toBe(503);
    expect(answer.headers.get('connection')).toBe('close');
    expect(await answer.json()).toEqual({
      error: {
        code: 'SHUTTING_DOWN',
        status: 'UNAVAILABLE',
        message: 'the pod-manager is shutting down',
        safe_to_resend: true,
      },
    });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(503);
    expectServiceShape(await ready.json(), 'SHUTTING_DOWN');
    release();
    await closing;
  });
});

describe('access', () => {
  it('refuses a token from SPLICE_AUTH_TOKEN shorter than 16 characters', () => {
    process.env.SPLICE_AUTH_TOKEN = 'short';
    try {
      expect(() => parseConfig({ module_config: {} })).toThrow(
        /SPLICE_AUTH_TOKEN: the token has 5 characters; at least 16/,
      );
    } finally {
      delete process.env.SPLICE_AUTH_TOKEN;
    }
  });

  it.each([
    ['127.0.0.1', true],
    ['127.9.8.7', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['127.example.com', false],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['example.com', false],
  ])('%s is loopback: %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });
});
