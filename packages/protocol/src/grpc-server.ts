/**
 * A lean gRPC server on node:http2, the counterpart of invoke-channel.ts: unary and
 * server-streaming methods whose handlers take and give raw protobuf messages.
 *
 * The module-server serves every call through here. grpc-js's server costs about twice the CPU per
 * call of this one (measured on this stack: 140–240 µs against 80–110 µs for an echo at 64 in
 * flight), spent in machinery one-message methods do not need (interceptors, metadata objects,
 * per-call timers and async hooks), and its GC pauses showed at p99. This speaks the standard wire
 * protocol (gRPC over HTTP/2: `application/grpc`, 5-byte length-prefixed messages, `grpc-timeout`,
 * `grpc-status`/`grpc-message` trailers, trailers-only errors), so grpc-js clients,
 * grpc-health-probe and the kubelet's gRPC probe talk to it as to any gRPC server (tests do each).
 *
 * Limits: a request message over `maxMessageBytes` is refused (RESOURCE_EXHAUSTED) as soon as its
 * bytes pass the limit; a request whose body has not arrived within `requestBodyMs` is reset;
 * compressed messages are refused (UNIMPLEMENTED: none of our clients compress); HTTP/2 settings
 * bound concurrent streams, header size and session memory.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { frameMessage } from './batch.js';

/** gRPC status numbers used here. */
const OK = 0;
const INVALID_ARGUMENT = 3;
const RESOURCE_EXHAUSTED = 8;
const UNIMPLEMENTED = 12;
const INTERNAL = 13;

/** One call, as a handler sees it. */
export interface GrpcServerCall {
  /** The request's headers (metadata included, lower-case names). */
  readonly headers: http2.IncomingHttpHeaders;
  /** The request message (unframed protobuf bytes). */
  readonly request: Buffer;
  /** When the caller's deadline passes (ms since the epoch), or Infinity when it set none. */
  readonly deadline: number;
  /** Whether the caller went away (cancelled, reset, connection lost): nothing it is sent arrives. */
  readonly cancelled: boolean;
  /** Calls `listener` once if the caller goes away before the call ended. */
  onCancel(listener: () => void): void;
  /** Sends one response message (framed here). A unary method sends one, then {@link end}s. */
  write(message: Uint8Array): void;
  /** Ends the call with OK and these extra trailers. */
  end(trailers?: Readonly<Record<string, string>>): void;
  /** Ends the call with a non-OK gRPC status and a message. */
  fail(status: number, message: string): void;
}

/** A method's handler; it must end every call (with `end` or `fail`). */
export type GrpcHandler = (call: GrpcServerCall) => void;

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  /** Handlers by full method path (`/package.Service/Method`). */
  methods: Readonly<Record<string, GrpcHandler>>;
  /** Largest request message, bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Longest a request's body may take to arrive, ms. Default 30 000. */
  requestBodyMs?: number;
  /** Most streams one connection may have open. Default 1 000. */
  maxConcurrentStreams?: number;
}

/** A running server. */
export interface GrpcServer {
  /** Binds `host:port` (0: any free port); resolves with the port bound. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops: takes no new connections or calls (GOAWAY: callers may resend what was refused), lets
   * the calls in flight end within `graceMs`, then closes every connection.
   */
  close(graceMs: number): Promise<void>;
}

/** Creates a server; nothing is bound until {@link GrpcServer.listen}. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const requestBodyMs = options.requestBodyMs ?? 30_000;
  const methods = new Map(Object.entries(options.methods));
  const sessions = new Set<http2.ServerHttp2Session>();
  // Requests whose body is still arriving, and since when: swept once a second, not a timer each.
  const arriving = new Map<http2.ServerHttp2Stream, number>();
  const server = http2.createServer({
    maxSessionMemory: 64,
    settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1_000, maxHeaderListSize: 16 * 1024 },
  });
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [stream, since] of arriving) {
      if (now - since < requestBodyMs) continue;
      arriving.delete(stream);
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  }, 1_000);
  sweeper.unref();

  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => arriving.delete(stream));
    const contentType = headers['content-type'];
    if (
      headers[':method'] !== 'POST' ||
      typeof contentType !== 'string' ||
      !contentType.startsWith('application/grpc')
    ) {
      // What the gRPC-over-HTTP/2 spec asks of a request that is not gRPC.
      stream.respond({ ':status': 415, 'content-type': 'text/plain' }, { endStream: true });
      return;
    }
    const path = headers[':path'] ?? '';
    const handler = methods.get(path);
    if (!handler) return trailersOnly(stream, UNIMPLEMENTED, `unknown method ${path}`);
    const deadline = deadlineOf(headers['grpc-timeout']);
    if (deadline === undefined)
      return trailersOnly(stream, INVALID_ARGUMENT, 'malformed grpc-timeout header');
    readRequest(stream, headers, maxMessageBytes, arriving, (request) => {
      const call = serverCall(stream, headers, request, deadline);
      try {
        handler(call);
      } catch (error) {
        // A request that cannot be decoded, or a handler's own fault: the caller gets a status.
        call.fail(INTERNAL, error instanceof Error ? error.message : String(error));
      }
    });
  });

  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      }),
    close: (graceMs) =>
      new Promise((resolve) => {
        clearInterval(sweeper);
        server.close();
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
          resolve();
        }, graceMs);
        const poll = setInterval(() => {
          if (sessions.size > 0) return;
          clearInterval(poll);
          clearTimeout(timer);
          resolve();
        }, 10);
        timer.unref();
      }),
  };
}

/** Collects the one request message, within the limit, and hands it on once the body has ended. */
function readRequest(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  max: number,
  arriving: Map<http2.ServerHttp2Stream, number>,
  onRequest: (request: Buffer) => void,
): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let refused = false;
  arriving.set(stream, Date.now());
  stream.on('data', (chunk: Buffer) => {
    if (refused) return;
    received += chunk.length;
    if (received > max + 5) {
      refused = true;
      arriving.delete(stream);
      trailersOnly(stream, RESOURCE_EXHAUSTED, `request message larger than ${max} bytes`);
      // The answer is sent: stop the upload rather than read and drop the rest of it.
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
      return;
    }
    chunks.push(chunk);
  });
  stream.on('end', () => {
    arriving.delete(stream);
    if (refused || stream.closed) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
    const problem = checkFrame(body, headers);
    if (problem) return trailersOnly(stream, problem[0], problem[1]);
    onRequest(body.subarray(5));
  });
}

/** Whether `body` is exactly one uncompressed message: undefined, or the status to refuse it with. */
function checkFrame(body: Buffer, headers: http2.IncomingHttpHeaders): [number, string] | undefined {
  if (body.length < 5) return [INTERNAL, 'the request holds no gRPC message'];
  const length = body.readUInt32BE(1);
  if (5 + length !== body.length) {
    return [INTERNAL, 5 + length > body.length ? 'truncated gRPC message' : 'more than one request message'];
  }
  if (body[0] !== 0) {
    const encoding = headers['grpc-encoding'];
    return body[0] === 1 && encoding && encoding !== 'identity'
      ? [UNIMPLEMENTED, `message compression '${encoding}' is not supported: send uncompressed messages`]
      : [INTERNAL, 'malformed gRPC message frame'];
  }
  return undefined;
}

function serverCall(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  request: Buffer,
  deadline: number,
): GrpcServerCall {
  let responded = false;
  let ended = false;
  const respond = () => {
    if (responded) return;
    responded = true;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  };
  const gone = () => stream.closed || stream.destroyed;
  // Messages written in one pass of the microtask queue (a batch's programs that finish together)
  // go out as one write.
  let pending: Buffer[] | undefined;
  const flush = () => {
    const frames = pending;
    pending = undefined;
    if (!frames || gone()) return;
    respond();
    stream.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
  };
  return {
    headers,
    request,
    deadline,
    get cancelled() {
      return !ended && gone();
    },
    onCancel(listener) {
      stream.once('close', () => {
        if (!ended) listener();
      });
    },
    write(message) {
      if (ended || gone()) return;
      if (!pending) {
        pending = [];
        process.nextTick(flush);
      }
      pending.push(frameMessage(message));
    },
    end(trailers) {
      if (ended) return;
      flush();
      ended = true;
      if (gone()) return;
      respond();
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(OK), ...trailers }));
      stream.end();
    },
    fail(status, message) {
      if (ended) return;
      flush();
      ended = true;
      if (gone()) return;
      if (!responded) return trailersOnly(stream, status, message);
      stream.once('wantTrailers', () =>
        stream.sendTrailers({ 'grpc-status': String(status), 'grpc-message': percentEncoded(message) }),
      );
      stream.end();
    },
  };
}

/** An error answered in the response's headers alone (gRPC's "trailers-only" response). */
function trailersOnly(stream: http2.ServerHttp2Stream, status: number, message: string): void {
  if (stream.closed || stream.destroyed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(status),
      'grpc-message': percentEncoded(message),
    },
    { endStream: true },
  );
}

/** `grpc-message` as the gRPC spec encodes it: printable ASCII but '%' as it is, every other byte as %XX. */
function percentEncoded(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/** The deadline a `grpc-timeout` header sets (Infinity without one), or undefined when it is malformed. */
function deadlineOf(timeout: string | string[] | undefined): number | undefined {
  if (timeout === undefined) return Number.POSITIVE_INFINITY;
  const match = typeof timeout === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(timeout) : null;
  if (!match) return undefined;
  return Date.now() + Number(match[1]) * (UNIT_MS[match[2] as string] as number);
}
