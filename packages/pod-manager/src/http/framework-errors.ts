/**
 * Errors Fastify and Node's HTTP parser answer by themselves (a malformed request line, headers
 * too large, a URL parameter too long, a path with another method), answered in the service's own
 * shape `{error: {code, status, message}}` with a code from the table, like every other error.
 */
import type { Socket } from 'node:net';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import { ServiceError, type ServiceErrorCode } from '../errors.js';

/** Fastify's `frameworkErrors`: a bad URL (400) or a parameter past maxParamLength (414). */
export function frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const code: ServiceErrorCode = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'URI_TOO_LONG' : 'BAD_REQUEST';
  const failure = new ServiceError(code, error.message);
  reply.code(failure.statusCode).type('application/json').send(failure.toJSON());
}

/** Node's `clientError`: the request could not even be parsed; the answer is written to the socket. */
export const clientErrorHandler: FastifyServerOptions['clientErrorHandler'] = (
  error: NodeJS.ErrnoException,
  socket: Socket,
) => {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const failure =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ServiceError('REQUEST_TIMEOUT', 'the request did not arrive in time')
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new ServiceError('HEADERS_TOO_LARGE', 'the request headers (or its URL) are too large')
        : new ServiceError('BAD_REQUEST', `malformed HTTP request (${error.code ?? 'parse error'})`);
  if (socket.writable) {
    const body = JSON.stringify(failure.toJSON());
    socket.write(
      `HTTP/1.1 ${failure.statusCode} ${reasonOf(failure.statusCode)}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
};

function reasonOf(status: number): string {
  return (
    { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status] ?? 'Error'
  );
}

/**
 * The methods each route path takes, so that a known path asked with another method is a 405 with
 * an Allow header, not a 404.
 */
export function trackRouteMethods(app: FastifyInstance): (url: string) => string[] {
  const routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];
  app.addHook('onRoute', (route) => {
    const pattern = new RegExp(
      `^${route.url
        .split('/')
        .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('/')}$`,
    );
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const existing = routes.find((r) => r.pattern.source === pattern.source);
    if (existing) for (const m of methods) existing.methods.add(m);
    else routes.push({ pattern, methods: new Set(methods) });
  });
  return (url) => {
    const path = url.split('?')[0] ?? '';
    const allowed = new Set<string>();
    for (const r of routes) if (r.pattern.test(path)) for (const m of r.methods) allowed.add(m);
    return [...allowed].sort();
  };
}
