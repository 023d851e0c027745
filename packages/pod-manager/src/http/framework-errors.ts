/**
 * Errors Fastify and Node's HTTP parser answer by themselves (a malformed request line, headers
 * too large, a URL parameter too long, a path with another method), answered in the service's own
 * shape `{error: {code, status, message}}` with a code from the table, like every other error.
 */
import { STATUS_CODES } from 'node:http';
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

/**
 * Node's `clientError`: the request could not even be parsed; the answer is written to the socket.
 * A method Node's parser does not know is still a method the path does not take: 405 with the
 * path's Allow header when the path is known.
 */
export function clientErrorHandler(
  methodsOf: (url: string) => string[],
): NonNullable<FastifyServerOptions['clientErrorHandler']> {
  return (error: { code: string; rawPacket?: unknown }, socket: Socket) => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    let allow: string[] = [];
    let failure: ServiceError;
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      failure = new ServiceError('REQUEST_TIMEOUT', 'the request did not arrive in time');
    } else if (error.code === 'HPE_HEADER_OVERFLOW') {
      failure = new ServiceError('HEADERS_TOO_LARGE', 'the request headers (or its URL) are too large');
    } else if (error.code === 'HPE_INVALID_METHOD' && Buffer.isBuffer(error.rawPacket)) {
      const [method = '?', url = ''] = (error.rawPacket.toString('latin1').split('\r\n', 1)[0] ?? '').split(
        ' ',
      );
      allow = methodsOf(url);
      failure =
        allow.length > 0
          ? new ServiceError(
              'METHOD_NOT_ALLOWED',
              `${method} is not allowed here; allowed: ${allow.join(', ')}`,
            )
          : new ServiceError('BAD_REQUEST', `unknown HTTP method ${method}`);
    } else {
      failure = new ServiceError('BAD_REQUEST', `malformed HTTP request (${error.code ?? 'parse error'})`);
    }
    if (socket.writable) {
      const body = JSON.stringify(failure.toJSON());
      const head = [
        `HTTP/1.1 ${failure.statusCode} ${STATUS_CODES[failure.statusCode] ?? 'Error'}`,
        'Connection: close',
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`,
        ...(allow.length > 0 ? [`Allow: ${allow.join(', ')}`] : []),
      ];
      socket.write(`${head.join('\r\n')}\r\n\r\n${body}`);
    }
    socket.destroy();
  };
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
