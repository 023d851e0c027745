/**
 * A lean gRPC client for the hot calls, `ModuleService/Invoke` and `InvokeBatch` (a server stream),
 * written on node:http2.
 *
 * The pod-manager forwards every invocation through here. grpc-js's client costs ~150 µs of CPU per
 * call (measured on this stack), mostly in machinery a pass-through of opaque bytes does not need
 * (interceptors, load balancing, metadata objects, per-call async hooks). This speaks the same
 * wire protocol (gRPC over HTTP/2: length-prefixed messages, grpc-status trailers, grpc-timeout),
 * so the module-server stays a standard gRPC server; health and stats still use grpc-js.
 *
 * The messages are encoded by the hand-written codec of protobuf.ts; a batch request arrives here
 * already encoded (the client made it; the pod-manager forwards it as it is).
 */
import * as http2 from 'node:http2';
import { FrameReader, frameMessage, MAX_BATCH_PROGRAMS, readBatchAnswer } from './batch.js';
import { SpliceError } from './errors.js';
import {
  CREDENTIAL_METADATA,
  encodeBatchRequest,
  INVOKE_BATCH_PATH,
  INVOKE_PATH,
  OUTCOME_TRAILER,
} from './proto.js';
import { decodeMessage, encodeMessage, PayloadSpec } from './protobuf.js';
import { Code, codeFromGrpcStatus } from './status.js';

/** Options of {@link createInvokeChannel}. */
export interface InvokeChannelOptions {
  /** Largest response message, bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** The module-server's secret, sent with every call. */
  secret?: string | undefined;
  /**
   * Sends Invoke calls made in the same turn of the event loop together, as one InvokeBatch (each
   * keeps its own answer, deadline and abort); a lone call still goes as a plain Invoke, at once
   * after the current I/O. Default false.
   */
  coalesce?: boolean | undefined;
}

/** Calls with a payload larger than this go on their own, never coalesced. */
const COALESCE_MAX_PAYLOAD = 64 * 1024;
/** A coalesced batch is sent once its payloads reach this many bytes. */
const COALESCE_MAX_BYTES = 1024 * 1024;

/** What Invoke answered. */
export interface InvokeAnswer {
  /** The encoded response (opaque to the caller). */
  payload: Buffer;
  /** The module threw: the server flagged the answer in the `splice-outcome` trailer. */
  threw: boolean;
}

/** Options of one call. */
export interface ChannelCallOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** One answer of an InvokeBatch stream: the raw message (to forward as it is) and what it says. */
export interface BatchAnswer {
  /** The protobuf `InvokeBatchAnswer` message, unframed. */
  message: Buffer;
  index: number;
  threw: boolean;
  /** The program's answer (empty when it failed with a status). */
  payload: Buffer;
  /** 0, or the gRPC status the program failed with, and its message. */
  status: number;
  statusMessage: string;
}

/** A connection to one module-server for Invoke calls. */
export interface InvokeChannel {
  /** Sends an encoded program; resolves with the encoded answer or rejects with a SpliceError. */
  invoke(payload: Uint8Array, options: ChannelCallOptions): Promise<InvokeAnswer>;
  /**
   * Sends an encoded `InvokeBatchRequest` message as it is and calls `onAnswer` for each answer
   * as it arrives; resolves when the server ends the stream with OK, else rejects with a
   * SpliceError (whose `safeToResend` says whether no program can have run).
   */
  invokeBatch(
    request: Uint8Array,
    options: ChannelCallOptions,
    onAnswer: (answer: BatchAnswer) => void,
  ): Promise<void>;
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
  const start = <T>(path: string, body: Buffer, call: ChannelCallOptions, sink: Sink<T>): Promise<T> => {
    if (closed) return Promise.reject(new SpliceError(Code.UNAVAILABLE, 'the invoke channel is closed'));
    const s = connect();
    return grpcCall(s, path, body, sink, {
      ...call,
      maxMessageBytes,
      address,
      credential,
      reached: () => connected.has(s),
    });
  };

  const invokeAlone = (payload: Uint8Array, call: ChannelCallOptions) =>
    start(INVOKE_PATH, frameMessage(encodeMessage(PayloadSpec, { payload })), call, unarySink());
  const coalescer = options.coalesce
    ? createCoalescer(invokeAlone, (request, call, onAnswer) =>
        start(INVOKE_BATCH_PATH, frameMessage(request), call, streamSink(onAnswer)),
      )
    : undefined;

  return {
    invoke: (payload, call) =>
      coalescer && payload.byteLength <= COALESCE_MAX_PAYLOAD
        ? coalescer(payload, call)
        : invokeAlone(payload, call),
    invokeBatch: (request, call, onAnswer) =>
      start(INVOKE_BATCH_PATH, frameMessage(request), call, streamSink(onAnswer)),
    close() {
      closed = true;
      session?.close();
      session = undefined;
    },
  };
}

interface CallSettings extends ChannelCallOptions {
  maxMessageBytes: number;
  address: string;
  credential: string | undefined;
  /** Whether the connection the call went out on was ever established. */
  reached: () => boolean;
}

/** What a call does with the response's bytes: unary collects them, a stream reads messages as they come. */
interface Sink<T> {
  /** Takes a chunk; returns an error to end the call with. */
  data(chunk: Buffer, maxMessageBytes: number): SpliceError | undefined;
  /** The result once the server ended the call with OK. */
  done(headers: http2.IncomingHttpHeaders): T;
  /** Whether any answer reached the caller (then nothing of the call may be resent). */
  answered: boolean;
}

function unarySink(): Sink<InvokeAnswer> {
  const chunks: Buffer[] = [];
  let received = 0;
  return {
    answered: false,
    data(chunk, max) {
      received += chunk.length;
      if (received > max + 5)
        return new SpliceError(Code.RESOURCE_EXHAUSTED, `response larger than ${max} bytes`);
      chunks.push(chunk);
      return undefined;
    },
    done(headers) {
      const threw = headers[OUTCOME_TRAILER] === 'remote-error';
      return { payload: unframe(Buffer.concat(chunks, received)), threw };
    },
  };
}

function streamSink(onAnswer: (answer: BatchAnswer) => void): Sink<void> {
  let reader: FrameReader | undefined;
  const sink: Sink<void> = {
    answered: false,
    data(chunk, max) {
      reader ??= new FrameReader(max + 64);
      for (const { flag, body } of reader.push(chunk)) {
        if (flag !== 0) return new SpliceError(Code.INTERNAL, 'malformed gRPC message frame');
        const { index, threw, payload, status, message } = readBatchAnswer(body);
        sink.answered = true;
        onAnswer({ message: body, index, threw, payload, status, statusMessage: message });
      }
      return undefined;
    },
    done() {
      if ((reader?.pendingBytes ?? 0) > 0)
        throw new SpliceError(Code.INTERNAL, 'truncated gRPC message frame');
    },
  };
  return sink;
}

interface Queued {
  payload: Uint8Array;
  call: ChannelCallOptions;
  resolve: (answer: InvokeAnswer) => void;
  reject: (error: SpliceError) => void;
}

type BatchSender = (
  request: Buffer,
  call: ChannelCallOptions,
  onAnswer: (answer: BatchAnswer) => void,
) => Promise<void>;

/**
 * Invoke calls made in one turn of the event loop, sent together when it ends (setImmediate: after
 * the I/O callbacks that made them, no timer): one call as a plain Invoke, several as one
 * InvokeBatch whose answers are handed out as they arrive.
 */
function createCoalescer(
  alone: (payload: Uint8Array, call: ChannelCallOptions) => Promise<InvokeAnswer>,
  batch: BatchSender,
): (payload: Uint8Array, call: ChannelCallOptions) => Promise<InvokeAnswer> {
  let queue: Queued[] = [];
  let bytes = 0;
  const flush = () => {
    const calls = queue;
    queue = [];
    bytes = 0;
    const live = calls.filter((c) => {
      if (!c.call.signal?.aborted) return true;
      c.reject(new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: c.call.signal.reason }));
      return false;
    });
    if (live.length === 1) {
      const [only] = live as [Queued];
      alone(only.payload, only.call).then(only.resolve, only.reject);
    } else if (live.length > 1) sendTogether(live, batch);
  };
  return (payload, call) =>
    new Promise((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ payload, call, resolve, reject });
      bytes += payload.byteLength;
      if (queue.length >= MAX_BATCH_PROGRAMS || bytes >= COALESCE_MAX_BYTES) {
        // Full: this batch goes now; the flush already scheduled sends whatever comes next.
        const full = queue;
        queue = [];
        bytes = 0;
        sendTogether(full, batch);
      }
    });
}

/** Sends calls as one InvokeBatch; each settles with its own answer, deadline or abort. */
function sendTogether(calls: Queued[], batch: BatchSender): void {
  let open = calls.length;
  const stream = new AbortController();
  const settled: boolean[] = calls.map(() => false);
  const settle = (i: number, error: SpliceError | undefined, answer?: InvokeAnswer, local = false) => {
    if (settled[i]) return;
    settled[i] = true;
    const c = calls[i] as Queued;
    clearTimeout(timers[i]);
    c.call.signal?.removeEventListener('abort', aborts[i] as () => void);
    if (error) c.reject(error);
    else c.resolve(answer as InvokeAnswer);
    // Nobody waits for the rest: stop the stream (the server drops what it still computes).
    if (--open === 0 && local) stream.abort();
  };
  const timers = calls.map((c, i) =>
    setTimeout(
      () =>
        settle(
          i,
          new SpliceError(
            Code.DEADLINE_EXCEEDED,
            `no answer from the module-server within ${c.call.timeoutMs} ms`,
          ),
          undefined,
          true,
        ),
      c.call.timeoutMs,
    ),
  );
  const aborts = calls.map((c, i) => {
    const onAbort = () =>
      settle(
        i,
        new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: c.call.signal?.reason }),
        undefined,
        true,
      );
    c.call.signal?.addEventListener('abort', onAbort, { once: true });
    return onAbort;
  });
  const timeouts = calls.map((c) => Math.max(1, Math.ceil(c.call.timeoutMs)));
  const request = encodeBatchRequest({ payloads: calls.map((c) => c.payload), timeouts_ms: timeouts });
  batch(request, { timeoutMs: Math.max(...timeouts), signal: stream.signal }, (answer) => {
    if (answer.index >= calls.length) return;
    if (answer.status !== 0) {
      const message = answer.statusMessage || `gRPC status ${answer.status}`;
      return settle(answer.index, new SpliceError(codeFromGrpcStatus(answer.status), message));
    }
    settle(answer.index, undefined, { payload: answer.payload, threw: answer.threw });
  }).then(
    () => {
      for (let i = 0; i < calls.length; i++) {
        settle(
          i,
          new SpliceError(Code.INTERNAL, 'the module-server ended the batch without answering this call'),
        );
      }
    },
    (error: unknown) => {
      const failure = SpliceError.from(error, Code.UNAVAILABLE);
      for (let i = 0; i < calls.length; i++) settle(i, failure);
    },
  );
}

function grpcCall<T>(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  sink: Sink<T>,
  o: CallSettings,
): Promise<T> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(new SpliceError(Code.CANCELLED, 'the call was aborted'));
    let settled = false;
    let headers: http2.IncomingHttpHeaders | undefined;
    const finish = (error: SpliceError | undefined, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve(value as T);
    };
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': path,
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
      if (settled) return;
      let problem: SpliceError | undefined;
      try {
        problem = sink.data(chunk, o.maxMessageBytes);
      } catch (error) {
        problem = SpliceError.from(error, Code.INTERNAL);
      }
      if (problem) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(problem);
      }
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      headers = { ...headers, ...trailers };
    });
    stream.on('close', () => {
      if (settled) return;
      const status = headers?.['grpc-status'];
      if (status === undefined) return finish(lost(stream, o, sink.answered));
      if (status !== '0') {
        const message = decodeURIComponent(String(headers?.['grpc-message'] ?? ''));
        return finish(
          new SpliceError(codeFromGrpcStatus(Number(status)), message || `gRPC status ${status}`),
        );
      }
      try {
        finish(undefined, sink.done(headers ?? {}));
      } catch (error) {
        finish(SpliceError.from(error, Code.INTERNAL));
      }
    });
    stream.on('error', (error: NodeJS.ErrnoException) => finish(lost(stream, o, sink.answered, error)));
    stream.end(body);
  });
}

/**
 * The error for a call that ended without a gRPC status. Only when the connection was never
 * established, or the server refused the stream (REFUSED_STREAM: it promises not to have processed
 * it), is the call known not to have run: then it is `safeToResend`.
 */
function lost(
  stream: http2.ClientHttp2Stream,
  o: CallSettings,
  answered: boolean,
  cause?: Error,
): SpliceError {
  const refused = stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
  const detail = cause ? `: ${cause.message}` : '';
  const neverRan = !answered && (!o.reached() || refused);
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
