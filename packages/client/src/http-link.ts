/**
 * Runs programs through the pod-manager: `POST /modules/:name/invoke` with the msgpack program.
 * Every answer says where the module's new calls should run now, which the placement follows.
 *
 * Auto-batching (proto/INVOKE.md, section 10): a call to a module goes at once when nothing is on
 * its way to that module (and replica); calls made while a request to it is in flight wait for the
 * end of the current turn of the event loop (setImmediate, no timer) and then travel together, as
 * one request whose answers stream back each as soon as its program is done. Every call keeps its
 * own deadline and AbortSignal: a call that expires or is aborted while it waits is never sent; one
 * that expires or is aborted in a batch is rejected at once (its program may still run remotely,
 * exactly as an aborted single call's may). A batch that fails after some answers fails the calls
 * still unanswered, and none of them is sent again.
 */
import {
  type BatchTrailer,
  Code,
  codeFromGrpcStatus,
  encodeBatchRequest,
  isCode,
  Rest,
  readBatchAnswer,
  SpliceError,
  TRAILER_FLAG,
} from '@splice-orc/protocol';
import type { CallRecorder, Link, LinkCallOptions } from './link.js';
import type { RequestOptions, Transport } from './transport.js';

/** Bounds of one batch. */
export interface BatchLimits {
  /** Most calls in one request. Default 128. */
  maxCalls?: number;
  /** Most program bytes in one request (a larger call goes alone). Default 1 MiB. */
  maxBytes?: number;
}

/** Options of {@link createHttpLink}. */
export interface HttpLinkOptions {
  transport: Transport;
  /** Where callback exchanges go; default `transport`. */
  callbackTransport?: Transport | undefined;
  record: CallRecorder;
  /** Follows the placement an answer carries. */
  follow: (module: string, placement: string | undefined) => void;
  /** Auto-batching: on (default), off, or with bounds of its own. */
  batch?: boolean | BatchLimits | undefined;
}

/** A call of the HTTP link: the link's options, plus a first call's condition. */
export type HttpCallOptions = LinkCallOptions & Pick<RequestOptions, 'ifRemote'>;

/** A call waiting for (or travelling in) a batch. */
interface Waiting {
  body: Uint8Array;
  deadline: number;
  resolve: (payload: Uint8Array) => void;
  reject: (error: unknown) => void;
  settled: boolean;
  /** Called once the call is settled, whatever settled it. */
  onSettle?: () => void;
}

/** One module's (and replica's) calls: requests on their way, and calls waiting to go. */
interface Lane {
  module: string;
  options: Pick<HttpCallOptions, 'route' | 'ifRemote'>;
  inFlight: number;
  waiting: Waiting[];
  scheduled: boolean;
}

const DEFAULT_MAX_CALLS = 128;
const DEFAULT_MAX_BYTES = 1024 * 1024;

/** The link to the pod-manager. */
export function createHttpLink({
  transport,
  callbackTransport = transport,
  record,
  follow,
  batch = true,
}: HttpLinkOptions): Link & {
  invoke(module: string, body: Uint8Array, options: HttpCallOptions): Promise<Uint8Array>;
  /** Sends a `callbacks` exchange (INVOKE.md 3.7) and resolves with its encoded answer. */
  exchangeCallbacks(
    module: string,
    body: Uint8Array,
    options: { timeoutMs: number; route?: string | undefined; longPoll?: boolean },
  ): Promise<Uint8Array>;
} {
  const limits = batch === false ? undefined : batch === true ? {} : batch;
  const maxCalls = Math.max(1, limits?.maxCalls ?? DEFAULT_MAX_CALLS);
  const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_BYTES;
  const lanes = new Map<string, Lane>();
  /** Set when the pod-manager does not take batches (an older one): calls go one by one. */
  let unsupported = false;

  async function single(module: string, body: Uint8Array, options: HttpCallOptions): Promise<Uint8Array> {
    const started = performance.now();
    const answer = await transport.invoke(Rest.Paths.invoke(module), body, options);
    follow(module, answer.placement);
    // A cold start is not what running remotely costs per call: the policy sees it without.
    record(module, 'remote', performance.now() - started - (answer.coldStartMs ?? 0));
    return answer.payload;
  }

  function laneOf(module: string, options: HttpCallOptions): Lane {
    const key = `${module}\0${options.route ?? ''}\0${options.ifRemote ? 1 : 0}`;
    let lane = lanes.get(key);
    if (!lane) {
      lane = {
        module,
        options: { route: options.route, ifRemote: options.ifRemote },
        inFlight: 0,
        waiting: [],
        scheduled: false,
      };
      lanes.set(key, lane);
    }
    return lane;
  }

  /** Counts a request of the lane while it runs. */
  async function inLane<T>(lane: Lane, request: () => Promise<T>): Promise<T> {
    lane.inFlight++;
    try {
      return await request();
    } finally {
      lane.inFlight--;
    }
  }

  function wait(lane: Lane, body: Uint8Array, options: HttpCallOptions): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) return reject(stopped(options));
      // A timer and a listener, not an AbortController per call: this runs for every batched call.
      const onStop = () => call.reject(stopped(options));
      const timer = setTimeout(onStop, options.timeoutMs);
      const call: Waiting = {
        body,
        deadline: Date.now() + options.timeoutMs,
        settled: false,
        resolve: (payload) => settle(() => resolve(payload)),
        reject: (error) => settle(() => reject(error)),
      };
      const settle = (how: () => void) => {
        if (call.settled) return;
        call.settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onStop);
        how();
        call.onSettle?.();
      };
      signal?.addEventListener('abort', onStop, { once: true });
      lane.waiting.push(call);
      if (!lane.scheduled) {
        lane.scheduled = true;
        setImmediate(() => flush(lane));
      }
    });
  }

  function flush(lane: Lane): void {
    lane.scheduled = false;
    const calls = lane.waiting.filter((c) => !c.settled);
    lane.waiting = [];
    while (calls.length > 0) {
      const group: Waiting[] = [];
      let bytes = 0;
      while (calls.length > 0 && group.length < maxCalls) {
        const next = calls[0] as Waiting;
        if (group.length > 0 && bytes + next.body.length > maxBytes) break;
        group.push(next);
        bytes += next.body.length;
        calls.shift();
      }
      void inLane(lane, () =>
        group.length === 1 ? sendAlone(lane, group[0] as Waiting) : sendBatch(lane, group),
      );
    }
  }

  async function sendAlone(lane: Lane, call: Waiting): Promise<void> {
    const timeoutMs = Math.max(1, call.deadline - Date.now());
    let done = false;
    const { signal, cleanup } = settledSignal([call], () => done);
    try {
      const payload = await single(lane.module, call.body, { ...lane.options, timeoutMs, signal });
      done = true;
      call.resolve(payload);
    } catch (error) {
      call.reject(error);
    } finally {
      cleanup();
    }
  }

  async function sendBatch(lane: Lane, calls: Waiting[]): Promise<void> {
    const now = Date.now();
    const timeouts = calls.map((c) => Math.max(1, c.deadline - now));
    const request = encodeBatchRequest({ payloads: calls.map((c) => c.body), timeouts_ms: timeouts });
    let trailer: BatchTrailer | undefined;
    let answered = 0;
    const seen: boolean[] = [];
    // Once every call has its answer, the rest of the response (the trailer) is read, not dropped:
    // dropping it would close the connection.
    const { signal, cleanup } = settledSignal(calls, () => answered === calls.length);
    const started = performance.now();
    try {
      const result = await transport.batch(
        Rest.Paths.invoke(lane.module),
        request,
        { ...lane.options, timeoutMs: Math.max(...timeouts), signal },
        (flag, body) => {
          if (flag & TRAILER_FLAG) {
            trailer = JSON.parse(body.toString('utf8')) as BatchTrailer;
            return;
          }
          const answer = readBatchAnswer(body);
          const call = calls[answer.index];
          if (!call || seen[answer.index]) return;
          seen[answer.index] = true;
          answered++;
          if (answer.status === 0) {
            record(lane.module, 'remote', performance.now() - started);
            call.resolve(answer.payload);
          } else {
            const code = codeFromGrpcStatus(answer.status);
            call.reject(new SpliceError(code, answer.message, { details: { reason: code } }));
          }
        },
      );
      follow(lane.module, result.placement);
      if (answered < calls.length) {
        const failure =
          trailer === undefined
            ? new SpliceError(Code.UNAVAILABLE, 'the batch answer ended without its trailer')
            : trailer.ok
              ? new SpliceError(Code.INTERNAL, 'the batch ended without answering this call')
              : batchError(trailer.error);
        for (const call of calls) call.reject(failure);
      }
    } catch (error) {
      const reason = (error as SpliceError).details?.reason;
      if (answered === 0 && (reason === 'PAYLOAD_TOO_LARGE' || reason === 'UNSUPPORTED_MEDIA_TYPE')) {
        // Nothing ran: the pod-manager refused the batch as such. Each call goes on its own.
        if (reason === 'UNSUPPORTED_MEDIA_TYPE') unsupported = true;
        await Promise.all(calls.filter((c) => !c.settled).map((c) => sendAlone(lane, c)));
        return;
      }
      for (const call of calls) call.reject(answered === 0 ? error : notResent(error));
    } finally {
      cleanup();
    }
  }

  return {
    async exchangeCallbacks(module, body, options) {
      // Only a long poll waits for as long as the app lives: it alone goes where nothing keeps the
      // process alive; a short exchange (the first, answers, close) is awaited like a call.
      const via = options.longPoll ? callbackTransport : transport;
      return (await via.invoke(Rest.Paths.callbacks(module), body, options)).payload;
    },
    invoke(module: string, body: Uint8Array, options: HttpCallOptions): Promise<Uint8Array> {
      if (!limits || unsupported || body.length > maxBytes) return single(module, body, options);
      const lane = laneOf(module, options);
      if (lane.inFlight === 0 && lane.waiting.length === 0) {
        // Nothing on its way: a lone call goes at once.
        return inLane(lane, () => single(module, body, options));
      }
      return wait(lane, body, options);
    },
  };
}

/**
 * A signal that aborts once every call is settled while `complete()` is false (each ended by its
 * deadline or its caller's abort): a request nobody waits for any more is dropped.
 */
function settledSignal(
  calls: Waiting[],
  complete: () => boolean,
): { signal: AbortSignal; cleanup: () => void } {
  const controller = new AbortController();
  let open = calls.filter((c) => !c.settled).length;
  for (const call of calls) {
    call.onSettle = () => {
      if (--open === 0 && !complete()) {
        controller.abort(new SpliceError(Code.CANCELLED, 'every call of the request ended'));
      }
    };
  }
  return {
    signal: controller.signal,
    cleanup: () => {
      for (const call of calls) call.onSettle = undefined;
    },
  };
}

/** Why a waiting call stopped: its caller aborted it, or its deadline passed. */
function stopped(options: HttpCallOptions): SpliceError {
  if (options.signal?.aborted) {
    return new SpliceError(Code.CANCELLED, 'the call was aborted', { cause: options.signal.reason });
  }
  return new SpliceError(
    Code.DEADLINE_EXCEEDED,
    `no answer from the pod-manager within ${options.timeoutMs} ms`,
  );
}

/** The error a trailer reports, as the calls it did not answer receive it. */
function batchError(error: Extract<BatchTrailer, { ok: false }>['error']): SpliceError {
  const code = isCode(error.status) ? error.status : Code.UNKNOWN;
  return new SpliceError(code, `the batch failed before this call was answered: ${error.message}`, {
    details: { reason: error.code },
  });
}

/** A failure after some answers: the calls left may have run, so none is marked safe to resend. */
function notResent(error: unknown): SpliceError {
  const e = error instanceof SpliceError ? error : SpliceError.from(error, Code.UNAVAILABLE);
  return new SpliceError(e.code, `the batch failed before this call was answered: ${e.message}`, {
    cause: error,
    details: e.details,
  });
}
