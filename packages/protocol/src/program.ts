/**
 * The invocation program: what one `Invoke` carries. A program is a list of operations run in
 * order; each operation starts from the module root, from a remote reference or from the result of
 * an earlier operation (a Slot), so several dependent calls travel in one message
 * (`math.det(math.matrix(x))` is two operations, the second taking Slot(0) as its argument).
 * The result of the last get, call or new is sent back; release operations, which a client
 * appends to free references it dropped, do not change it. `proto/INVOKE.md` is the contract.
 */
import { RemoteRef, Slot } from './codec.js';
import { SpliceError } from './errors.js';
import { Code } from './status.js';

/** Version of the program format; a server refuses a version it does not know. */
export const PROGRAM_VERSION = 1;

/** Where an operation starts: the module root (null), a remote reference, or an earlier result. */
export type Target = null | RemoteRef | Slot;

/** Reads the value at `path` from the target. */
export interface GetOp {
  op: 'get';
  target: Target;
  path: string[];
}

/** Calls the function at `path` on the target (with `this` bound to its parent). */
export interface CallOp {
  op: 'call';
  target: Target;
  path: string[];
  args: unknown[];
}

/** Constructs the class at `path` on the target. */
export interface NewOp {
  op: 'new';
  target: Target;
  path: string[];
  args: unknown[];
}

/** Frees remote references of the session; the object ids are those of `RemoteRef.id`. */
export interface ReleaseOp {
  op: 'release';
  ids: number[];
}

/**
 * Takes the next items of an iterator (INVOKE.md 3.5): the target is an iterator or async iterator,
 * or an iterable whose iterator is made for it. At most `max` items; after the first, only those
 * ready at once (a slow producer is not waited for).
 */
export interface PullOp {
  op: 'pull';
  target: Target;
  max: number;
}

/** Closes an iterator early: its `return()` runs (a generator's `finally` blocks with it). */
export interface CloseOp {
  op: 'close';
  target: Target;
}

/** Opens a pipe for a stream argument (INVOKE.md 3.6); answers a reference to it. */
export interface PipeOp {
  op: 'pipe';
}

/** Sends chunks of a stream argument into its pipe; answered once the pipe has room (flow control). */
export interface PushOp {
  op: 'push';
  target: Target;
  items: unknown[];
  /** The stream has ended after these items. */
  end: boolean;
  /** The stream failed after these items: the module's read fails with this message. */
  error?: string;
}

/** What a pull answers: the items taken, whether the iterator is done, and (when the pull made it) the iterator. */
export interface PullResult {
  items: unknown[];
  done: boolean;
  iterator?: unknown;
}

/** Most items one pull may ask for. */
export const MAX_PULL_ITEMS = 1024;

/** One step of a program. */
export type Op = GetOp | CallOp | NewOp | ReleaseOp | PullOp | CloseOp | PipeOp | PushOp;

/** The request payload of `Invoke`. An empty `ops` list only renews the session's lease. */
export interface InvokeRequest {
  v: number;
  /** Client session that owns the references the program makes; chosen by the client. */
  session: string;
  ops: Op[];
}

/** The serialised form of an error thrown by the module. */
export type RemoteErrorValue = Error;

/** The response payload of `Invoke`. `lease` (ms) tells the client how often to renew. */
export type InvokeResponse =
  | { v: number; ok: true; value: unknown; lease: number }
  | { v: number; ok: false; error: RemoteErrorValue; lease: number };

const MAX_OPS = 1024;
/** Operations that start from a target. */
const TARGETED = new Set(['get', 'call', 'new', 'pull', 'close', 'push']);

/**
 * Checks the shape of a decoded request and returns it typed. Everything the server relies on is
 * checked here, so the executor never meets a malformed operation.
 */
export function parseRequest(decoded: unknown): InvokeRequest {
  const req = decoded as Partial<InvokeRequest> | null;
  if (req === null || typeof req !== 'object') throw invalid('the payload is not an object');
  if (req.v !== PROGRAM_VERSION) throw invalid(`unsupported program version ${String(req.v)}`);
  if (typeof req.session !== 'string' || req.session.length === 0 || req.session.length > 128) {
    throw invalid('session must be a string of 1 to 128 characters');
  }
  if (!Array.isArray(req.ops) || req.ops.length > MAX_OPS) {
    throw invalid(`ops must be an array of at most ${MAX_OPS} operations`);
  }
  for (const [i, op] of req.ops.entries()) checkOp(op, i);
  return req as InvokeRequest;
}

function checkOp(op: Op, index: number): void {
  if (op === null || typeof op !== 'object') throw invalid(`ops[${index}] is not an object`);
  if (op.op === 'release') {
    if (!Array.isArray(op.ids) || !op.ids.every(Number.isSafeInteger)) {
      throw invalid(`ops[${index}].ids must be an array of integers`);
    }
    return;
  }
  if (op.op === 'pipe') return;
  if (!TARGETED.has(op.op)) {
    throw invalid(`ops[${index}].op must be get, call, new, release, pull, close, pipe or push`);
  }
  const t = op.target;
  if (!(t === null || t instanceof RemoteRef || (t instanceof Slot && t.index >= 0 && t.index < index))) {
    throw invalid(`ops[${index}].target must be null, a remote reference or an earlier slot`);
  }
  if (op.op === 'close') return;
  if (op.op === 'push') {
    if (!Array.isArray(op.items) || op.items.length > MAX_PULL_ITEMS) {
      throw invalid(`ops[${index}].items must be an array of at most ${MAX_PULL_ITEMS} chunks`);
    }
    if (typeof op.end !== 'boolean') throw invalid(`ops[${index}].end must be a boolean`);
    if (op.error !== undefined && (typeof op.error !== 'string' || op.error.length > 1_000)) {
      throw invalid(`ops[${index}].error must be a string of at most 1000 characters`);
    }
    return;
  }
  if (op.op === 'pull') {
    if (!Number.isSafeInteger(op.max) || op.max < 1 || op.max > MAX_PULL_ITEMS) {
      throw invalid(`ops[${index}].max must be an integer from 1 to ${MAX_PULL_ITEMS}`);
    }
    return;
  }
  if (!Array.isArray(op.path) || !op.path.every((s) => typeof s === 'string')) {
    throw invalid(`ops[${index}].path must be an array of strings`);
  }
  if (op.op !== 'get' && !Array.isArray(op.args)) throw invalid(`ops[${index}].args must be an array`);
}

function invalid(message: string): SpliceError {
  return new SpliceError(Code.INVALID_ARGUMENT, `invalid invocation: ${message}`);
}
