/**
 * A lean gRPC client for the one hot call, `ModuleService/Invoke`, written on node:http2.
 *
 * The pod-manager forwards every invocation through here. grpc-js's client costs ~150 µs of CPU per
 * call (as measured), mostly in machinery a pass-through of opaque bytes does not need
 * (interceptors, load balancing, metadata objects, per-call async hooks). This speaks the same
 * wire protocol (gRPC over HTTP/2: length-prefixed messages, grpc-status trailers, grpc-timeout),
 * so the module-server stays a standard gRPC server; health and stats still use grpc-js.
 *
 * The message is `InvokeRequest { bytes payload = 1; }` (proto/splice/v1/module.proto): a single
 * length-delimited field, encoded here by hand instead of through protobufjs.
 */
import * as http2 from 'node:http2';
import { SpliceError } from './errors.js';
import { CREDENTIAL_METADATA, INVOKE_PATH, OUTCOME_TRAILER } from './proto.js';
import { decodeMessage, encodeMessage, PayloadSpec } from './protobuf.js';
import { Code, codeFromGrpcStatus } from './status.js';

/** Options of {@link createInvokeChannel}. */
export interface InvokeChannelOptions {
  /** Largest response message, bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** The module-server's secret, sent with every call. */
  secret?: string | undefined;
}

/** What Invoke answered. */
export interface InvokeAnswer {
  /** The encoded response (opaque to the caller). */
  payload: Buffer;
  /** The module threw: the server flagged the answer in the `splice-outcome` trailer. */
  threw: boolean;
}

/** A connection to one module-server for Invoke calls. */
export interface InvokeChannel {
  /** Sends an encoded program; resolves with the encoded answer or rejects with a SpliceError. */
  invoke(
    payload: Uint8Array,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<InvokeAnswer>;
  close(): void;
}

/** Opens (lazily, and again after a loss) an HTTP/2 connection to `address` (`host:port`). */
export function createInvokeChannel(address: string, options: InvokeChannelOptions = {}): InvokeChannel {
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const credential = options.secret ? `Bearer ${options.secret}` : undefined;
  let session: http2.ClientHttp2Session | undefined;
  const connected = new WeakSet<http2.ClientHttp2Session>();
  let closed = false;

  const connect = (): http2.ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const s = http2.connect(`http://${address}`, { maxSessionMemory: 64 });
    const forget = () => {
      if (session === s) session = undefined;
    };
    s.on('close', forget);
    s.on('goaway', forget);
    s.on('error', forget);
    s.once('connect', () => connected.add(s));
    s.unref();
    session = s;
    return s;
  };

  return {
    invoke(payload, call) {
      if (closed) return Promise.reject(new SpliceError(Code.UNAVAILABLE, 'the invoke channel is closed'));
      const s = connect();
      return unary(s, frame(payload), {
        ...call,
        maxMessageBytes,
        address,
        credential,
        reached: () => connected.has(s),
      });
    },
    close() {
      closed = true;
      session?.close();
      session = undefined;
    },
  };
}

/** gRPC message framing around the protobuf encoding of InvokeRequest. */
function frame(payload: Uint8Array): Buffer {
  const message = encodeMessage(PayloadSpec, { payload });
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0; // not compressed
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

interface UnaryOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  maxMessageBytes: number;
  address: string;
  credential: string | undefined;
  /** Whether the connection the call went out on was ever established. */
  reached: () => boolean;
}

function unary(session: http2.ClientHttp2Session, body: Buffer, o: UnaryOptions): Promise<InvokeAnswer> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(new SpliceError(Code.CANCELLED, 'the call was aborted'));
    let settled = false;
    const chunks: Buffer[] = [];
    let received = 0;
    let headers: http2.IncomingHttpHeaders | undefined;
    const finish = (error: SpliceError | undefined, value?: InvokeAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve(value!);
    };
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': INVOKE_PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${Math.max(1, Math.ceil(o.timeoutMs))}m`,
        ...(o.credential ? { [CREDENTIAL_METADATA]: o.credential } : {}),
      },
      { endStream: false },
    );
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish(
        new SpliceError(Code.DEADLINE_EXCEEDED, `no answer from the module-server within ${o.timeoutMs} ms`),
      );
    }, o.timeoutMs);
    const onAbort = () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish(new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: o.signal?.reason }));
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    stream.on('response', (h: http2.IncomingHttpHeaders) => {
      headers = h;
    });
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > o.maxMessageBytes + 5) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(new SpliceError(Code.RESOURCE_EXHAUSTED, `response larger than ${o.maxMessageBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      headers = { ...headers, ...trailers };
    });
    stream.on('close', () => {
      if (settled) return;
      const status = headers?.['grpc-status'];
      if (status === undefined) return finish(lost(stream, o));
      if (status !== '0') {
        const message = decodeURIComponent(String(headers?.['grpc-message'] ?? ''));
        return finish(
          new SpliceError(codeFromGrpcStatus(Number(status)), message || `gRPC status ${status}`),
        );
      }
      try {
        const threw = headers?.[OUTCOME_TRAILER] === 'remote-error';
        finish(undefined, { payload: unframe(Buffer.concat(chunks, received)), threw });
      } catch (error) {
        finish(SpliceError.from(error, Code.INTERNAL));
      }
    });
    stream.on('error', (error: NodeJS.ErrnoException) => finish(lost(stream, o, error)));
    stream.end(body);
  });
}

/**
 * The error for a call that ended without a gRPC status. Only when the connection was never
 * established, or the server refused the stream (REFUSED_STREAM: it promises not to have processed
 * it), is the call known not to have run: then it is `safeToResend`.
 */
function lost(stream: http2.ClientHttp2Stream, o: UnaryOptions, cause?: Error): SpliceError {
  const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
  const detail = cause ? `: ${cause.message}` : '';
  const neverRan = !o.reached() || refused;
  const message = neverRan
    ? `no connection established to module-server ${o.address}${detail}`
    : `connection to module-server ${o.address} lost during the call${detail}`;
  return new SpliceError(Code.UNAVAILABLE, message, { cause, safeToResend: neverRan });
}

/** Reads the one gRPC message of a response and the payload field inside it. */
function unframe(body: Buffer): Buffer {
  if (body.length < 5 || body[0] !== 0) throw new SpliceError(Code.INTERNAL, 'malformed gRPC response frame');
  const end = 5 + body.readUInt32BE(1);
  if (end > body.length) throw new SpliceError(Code.INTERNAL, 'truncated gRPC response frame');
  return decodeMessage(PayloadSpec, body.subarray(5, end)).payload as Buffer;
}
