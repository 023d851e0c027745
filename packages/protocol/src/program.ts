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

/** One step of a program. */
export type Op = GetOp | CallOp | NewOp | ReleaseOp;

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
  if (op.op !== 'get' && op.op !== 'call' && op.op !== 'new') {
    throw invalid(`ops[${index}].op must be get, call, new or release`);
  }
  const t = op.target;
  if (!(t === null || t instanceof RemoteRef || (t instanceof Slot && t.index >= 0 && t.index < index))) {
    throw invalid(`ops[${index}].target must be null, a remote reference or an earlier slot`);
  }
  if (!Array.isArray(op.path) || !op.path.every((s) => typeof s === 'string')) {
    throw invalid(`ops[${index}].path must be an array of strings`);
  }
  if (op.op !== 'get' && !Array.isArray(op.args)) throw invalid(`ops[${index}].args must be an array`);
}

function invalid(message: string): SpliceError {
  return new SpliceError(Code.INVALID_ARGUMENT, `invalid invocation: ${message}`);
}
