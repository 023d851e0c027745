/**
 * HTTP to the pod-manager over keep-alive connections (an undici Pool). Every request has a
 * deadline; error bodies become SpliceErrors with the pod-manager's code kept as `details.reason`.
 * A request that is known not to have reached a module (the connection was refused, or the
 * pod-manager answered `safe_to_resend`: it is shutting down, its cold-start queue is full) is sent
 * again with backoff until its deadline, so a rolling restart of the pod-manager costs callers
 * nothing.
 */

import type { Socket } from 'node:net';
import { BATCH_TYPE, Code, FrameReader, isCode, linkedSignal, Rest, SpliceError } from '@splice-orc/protocol';
import { buildConnector, type Dispatcher, Pool, errors as undiciErrors } from 'undici';

/** Options of {@link createTransport}. */
export interface TransportOptions {
  /** Connections kept open to the pod-manager. Default 16. */
  connections?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Bearer token of the pod-manager. */
  token?: string | undefined;
  /**
   * Send a request that never reached a module again, with backoff, until its deadline (a refused
   * connection, a pod-manager shutting down). Default true; a CLI turns it off to fail at once.
   */
  resend?: boolean;
  /**
   * Requests of this transport never keep the process alive (its sockets and deadlines are
   * unref'd): for the client's long polls for callbacks, which wait for as long as the app lives.
   */
  unref?: boolean;
}

/** Options of one request. */
export interface RequestOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** The replica (module-server instance id) the call must reach: where its references live. */
  route?: string | undefined;
  /** Run the call only if the module's calls run remotely (else 409 PLACED_LOCAL): a first call. */
  ifRemote?: boolean | undefined;
}

/** What an invocation answered. */
export interface InvokeResult {
  payload: Buffer;
  placement?: string | undefined;
  coldStartMs?: number;
}

/** The client's connection to one pod-manager. */
export interface Transport {
  /** POSTs msgpack bytes to `path` and resolves with the msgpack answer and the module's placement. */
  invoke(path: string, body: Uint8Array, options: RequestOptions): Promise<InvokeResult>;
  /**
   * POSTs an encoded batch (an InvokeBatchRequest) and hands each frame of the answer to `onFrame`
   * as it arrives; resolves (with an empty payload) when the answer ends.
   */
  batch(
    path: string,
    body: Uint8Array,
    options: RequestOptions,
    onFrame: (flag: number, body: Buffer) => void,
  ): Promise<InvokeResult>;
  /** Sends a JSON request (management endpoints). */
  json(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: RequestOptions,
    body?: unknown,
  ): Promise<unknown>;
  /** Sends a request with a body of any type (or none) and resolves with the answer's bytes. */
  bytes(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: RequestOptions,
    body?: { bytes: Uint8Array | string; type: string },
  ): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Opens sockets that never keep the process alive: undici refs a socket while it has requests, so
 * its `ref` is made a no-op.
 */
function unrefConnector(): buildConnector.connector {
  const connect = buildConnector({});
  return (options, callback) =>
    connect(options, (error, socket) => {
      if (socket) {
        (socket as Socket).unref();
        (socket as Socket).ref = () => socket as Socket;
      }
      if (error) callback(error, null);
      else callback(null, socket as Socket);
    });
}

/** Connects to the pod-manager at `url` (connections open lazily). */
export function createTransport(url: string, options: TransportOptions = {}): Transport {
  const base = new URL(url);
  const prefix = base.pathname.replace(/\/$/, '');
  const pool = new Pool(base.origin, {
    connections: options.connections ?? 16,
    pipelining: 1,
    ...(options.unref ? { connect: unrefConnector() } : {}),
  });
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;

  async function send(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    request: RequestOptions,
    body?: { bytes: Uint8Array | string; type: string },
    read: ReadBody = readWhole,
  ) {
    const deadline = Date.now() + request.timeoutMs;
    // AbortSignal.timeout's timer does not keep the process alive; linkedSignal's own one does.
    const { signal, cleanup } = options.unref
      ? linkedSignal([request.signal, AbortSignal.timeout(request.timeoutMs)])
      : linkedSignal([request.signal], request.timeoutMs);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await sendOnce(method, path, { request, deadline, signal }, body, read);
        } catch (error) {
          const pause = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt);
          const resend =
            error instanceof SpliceError && error.safeToResend && error.code === Code.UNAVAILABLE;
          if (!resend || options.resend === false || signal.aborted || Date.now() + pause >= deadline)
            throw error;
          await new Promise((resolve) => setTimeout(resolve, pause));
        }
      }
    } finally {
      cleanup();
    }
  }

  async function sendOnce(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    { request, deadline, signal }: { request: RequestOptions; deadline: number; signal: AbortSignal },
    body: { bytes: Uint8Array | string; type: string } | undefined,
    read: ReadBody,
  ): Promise<InvokeResult> {
    try {
      const response = await pool.request({
        method,
        path: prefix + path,
        body: body === undefined ? null : body.bytes,
        signal,
        headers: {
          ...headers,
          ...(body === undefined ? {} : { 'content-type': body.type }),
          [Rest.Headers.timeout]: String(Math.max(1, deadline - Date.now())),
          ...(request.route ? { [Rest.Headers.route]: request.route } : {}),
          ...(request.ifRemote ? { [Rest.Headers.ifRemote]: '1' } : {}),
        },
      });
      if (response.statusCode >= 400) {
        throw errorFromResponse(response.statusCode, await readWhole(response.body), path);
      }
      const payload = await read(response.body);
      const placement = response.headers[Rest.Headers.placement];
      const coldStart = Number(response.headers[Rest.Headers.coldStart] ?? 0);
      return {
        payload,
        placement: typeof placement === 'string' ? placement : undefined,
        coldStartMs: coldStart || 0,
      };
    } catch (error) {
      throw asSpliceError(error, request, base.origin);
    }
  }

  return {
    invoke: (path, bytes, request) => send('POST', path, request, { bytes, type: Rest.MSGPACK_TYPE }),
    batch: (path, bytes, request, onFrame) =>
      send('POST', path, request, { bytes, type: BATCH_TYPE }, async (stream) => {
        const reader = new FrameReader(MAX_FRAME_BYTES);
        for await (const chunk of stream) {
          for (const frame of reader.push(chunk as Buffer)) onFrame(frame.flag, frame.body);
        }
        if (reader.pendingBytes > 0) {
          throw new SpliceError(Code.UNAVAILABLE, 'the batch answer ended in the middle of a frame');
        }
        return EMPTY;
      }),
    json: async (method, path, request, body) => {
      const json = body === undefined ? undefined : { bytes: JSON.stringify(body), type: 'application/json' };
      return JSON.parse((await send(method, path, request, json)).payload.toString('utf8'));
    },
    bytes: async (method, path, request, body) => (await send(method, path, request, body)).payload,
    close: () => pool.close(),
  };
}

type ReadBody = (body: Dispatcher.ResponseData['body']) => Promise<Buffer>;

const readWhole: ReadBody = async (body) => Buffer.from(await body.arrayBuffer());
const EMPTY = Buffer.alloc(0);
/** Largest frame of a batch answer: one answer, which the pod-manager caps at its payload limit. */
const MAX_FRAME_BYTES = 256 * 1024 * 1024;

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1_000;

function errorFromResponse(status: number, payload: Buffer, path: string): SpliceError {
  let body:
    | { error?: { code?: string; status?: string; message?: string; safe_to_resend?: boolean } }
    | undefined;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    body = undefined;
  }
  const error = body?.error;
  const code = isCode(error?.status) ? error.status : codeFromHttp(status);
  const message = error?.message ?? `pod-manager answered HTTP ${status} for ${path}`;
  return new SpliceError(code, message, {
    details: { reason: error?.code ?? code, httpStatus: status },
    safeToResend: error?.safe_to_resend === true,
  });
}

function codeFromHttp(status: number): Code {
  if (status === 400) return Code.INVALID_ARGUMENT;
  if (status === 401) return Code.UNAUTHENTICATED;
  if (status === 403) return Code.PERMISSION_DENIED;
  if (status === 404) return Code.NOT_FOUND;
  if (status === 413) return Code.RESOURCE_EXHAUSTED;
  if (status === 503) return Code.UNAVAILABLE;
  if (status === 504) return Code.DEADLINE_EXCEEDED;
  return Code.UNKNOWN;
}

function asSpliceError(error: unknown, request: RequestOptions, origin: string): SpliceError {
  if (error instanceof SpliceError) return error;
  if (request.signal?.aborted)
    return new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: request.signal.reason });
  const name = (error as { name?: string })?.name;
  if (name === 'TimeoutError' || error instanceof undiciErrors.HeadersTimeoutError) {
    return new SpliceError(
      Code.DEADLINE_EXCEEDED,
      `no answer from the pod-manager within ${request.timeoutMs} ms`,
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  // A refused connection never carried the request.
  const refused = (error as { code?: string })?.code === 'ECONNREFUSED';
  return new SpliceError(Code.UNAVAILABLE, `cannot reach the pod-manager at ${origin}: ${message}`, {
    cause: error,
    safeToResend: refused,
  });
}
