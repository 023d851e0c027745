/**
 * Callbacks (INVOKE.md 3.7): a function of the app passed as an argument reaches the module as a
 * function; calling it sends a *callback request* that the app answers. The app fetches requests
 * and returns answers with one program operation, `callbacks`, sent to the server's callback
 * endpoint (a Node module-server serves it on a thread of its own, so that module code blocked on a
 * synchronous callback does not stop it). This file holds its shape and its checks.
 */
import { MAX_CALLBACK_ID_LENGTH } from './codec.js';
import { SpliceError } from './errors.js';
import { Code } from './status.js';

/** Longest a `callbacks` operation may wait for a request, ms. */
export const MAX_CALLBACK_WAIT_MS = 25_000;
/** Most answers, released ids or requests one `callbacks` exchange carries. */
export const MAX_CALLBACK_ITEMS = 1024;

/** An answer of the app to one callback request: the encoded {@link CallbackOutcome}. */
export interface CallbackAnswer {
  request: number;
  answer: Uint8Array;
}

/** The `callbacks` operation: answers for the server, then requests for the app. */
export interface CallbacksOp {
  op: 'callbacks';
  answers: CallbackAnswer[];
  /** Callback ids the app released: later calls of them fail in the module at once. */
  released: string[];
  /** How long to wait for a request when none is queued, ms (0 answers at once). */
  wait: number;
  /** The app is done: every callback of the session is released and waiting requests fail. */
  close?: boolean;
}

/** A call of a callback by the module, for the app to run. */
export interface CallbackRequest {
  request: number;
  callback: string;
  /** The encoded array of arguments (values of section 7; references made in the session). */
  args: Uint8Array;
}

/**
 * A callback whose stub module code no longer holds (the server's garbage collector took it), and
 * how many times the server bound its id since the id's last notice. The app subtracts that from
 * how many times it sent the id since then, and forgets the function when nothing is left (else a
 * call on its way binds it again).
 */
export interface DroppedCallback {
  callback: string;
  binds: number;
}

/** The answer of a `callbacks` operation. */
export interface CallbacksResult {
  /** The id of the server instance: where later calls that pass callbacks and later exchanges go. */
  server: string;
  requests: CallbackRequest[];
  /** Stubs the server dropped since the last exchange (absent: none). */
  dropped?: DroppedCallback[];
}

/**
 * The well-formed entries of a result's `dropped` (at most {@link MAX_CALLBACK_ITEMS}); anything
 * else a server sent there is ignored: it can only make the app forget that server's own callbacks.
 */
export function droppedOf(result: CallbacksResult): DroppedCallback[] {
  const { dropped } = result;
  if (!Array.isArray(dropped)) return [];
  return dropped
    .slice(0, MAX_CALLBACK_ITEMS)
    .filter(
      (d): d is DroppedCallback =>
        d !== null &&
        typeof d === 'object' &&
        typeof d.callback === 'string' &&
        Number.isSafeInteger(d.binds) &&
        d.binds > 0,
    );
}

/**
 * What the app answers to a request (encoded, in `CallbackAnswer.answer`): the function's value,
 * the error it threw, or `pending` for a promise, whose outcome follows later as a second answer to
 * the same request, marked `settled`. The two may arrive in either order: a `settled` outcome that
 * comes first is still a promise for the module, and the `pending` after it is ignored.
 */
export type CallbackOutcome =
  | { ok: true; value: unknown; settled?: boolean }
  | { ok: false; error: Error; settled?: boolean }
  | { pending: true };

/** Checks a decoded `callbacks` program: `{v: 1, session, ops: [callbacksOp]}`. */
export function parseCallbacksRequest(decoded: unknown): { session: string; op: CallbacksOp } {
  const req = decoded as { v?: unknown; session?: unknown; ops?: unknown } | null;
  if (req === null || typeof req !== 'object' || req.v !== 1) throw invalid('v must be 1');
  if (typeof req.session !== 'string' || req.session.length < 1 || req.session.length > 128) {
    throw invalid('session must be a string of 1 to 128 characters');
  }
  if (!Array.isArray(req.ops) || req.ops.length !== 1) {
    throw invalid('a callbacks program has exactly one operation, callbacks');
  }
  const op = req.ops[0] as Partial<Record<keyof CallbacksOp, unknown>> | null;
  if (op === null || typeof op !== 'object' || op.op !== 'callbacks') {
    throw invalid('the callback endpoint takes only the callbacks operation');
  }
  const answers = op.answers ?? [];
  if (!Array.isArray(answers) || answers.length > MAX_CALLBACK_ITEMS) {
    throw invalid(`answers must be an array of at most ${MAX_CALLBACK_ITEMS}`);
  }
  for (const a of answers as Array<Partial<CallbackAnswer> | null>) {
    if (a === null || !Number.isSafeInteger(a.request) || !(a.answer instanceof Uint8Array)) {
      throw invalid('each answer is {request: integer, answer: bytes}');
    }
  }
  const released = op.released ?? [];
  if (
    !Array.isArray(released) ||
    released.length > MAX_CALLBACK_ITEMS ||
    !released.every((id) => typeof id === 'string' && id.length <= MAX_CALLBACK_ID_LENGTH)
  ) {
    throw invalid(`released must be an array of at most ${MAX_CALLBACK_ITEMS} callback ids`);
  }
  const wait = op.wait ?? 0;
  if (!Number.isSafeInteger(wait) || (wait as number) < 0 || (wait as number) > MAX_CALLBACK_WAIT_MS) {
    throw invalid(`wait must be an integer from 0 to ${MAX_CALLBACK_WAIT_MS} ms`);
  }
  if (op.close !== undefined && typeof op.close !== 'boolean') throw invalid('close must be a boolean');
  return {
    session: req.session,
    op: {
      op: 'callbacks',
      answers: answers as CallbackAnswer[],
      released: released as string[],
      wait: wait as number,
      ...(op.close ? { close: true } : {}),
    },
  };
}

function invalid(message: string): SpliceError {
  return new SpliceError(Code.INVALID_ARGUMENT, `invalid callbacks program: ${message}`);
}
