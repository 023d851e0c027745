/**
 * One invocation, bytes in and bytes out: decode the program, run it against the module, encode
 * the outcome, making remote references for what cannot travel by value. The module-server wraps
 * it in gRPC; a client that places a module locally calls it in its own process.
 */
import {
  Code,
  decode,
  describe,
  encode,
  type InvokeResponse,
  PROGRAM_VERSION,
  parseRequest,
  RemoteRef,
  SpliceError,
} from '@splice-orc/protocol';
import type { CallbackHub } from './callbacks.js';
import { type ExecutionContext, execute } from './executor.js';
import { checkValue } from './guard.js';
import type { ObjectTable } from './object-table.js';

/** Options of {@link createInvocationHandler}. */
export interface InvocationHandlerOptions {
  /** What paths start from: the loaded module's root. */
  root: object;
  table: ObjectTable;
  /** Id of this instance, carried by every reference it makes. */
  serverId: string;
  /** Stubs for callbacks (functions of the app among arguments); without it they are refused. */
  callbacks?: CallbackHub | undefined;
}

/** The encoded answer, and whether the module threw (for metrics: the bytes stay opaque upstream). */
export interface InvocationResult {
  payload: Uint8Array;
  threw: boolean;
}

/**
 * Makes the handler. It rejects with a SpliceError for a failure of the invocation itself
 * (malformed, refused, unknown reference, result that cannot be sent); an error thrown by the
 * module is an answer, not a rejection.
 */
export function createInvocationHandler(
  options: InvocationHandlerOptions,
): (payload: Uint8Array, deadline?: number) => Promise<InvocationResult> {
  return async (payload, deadline) => {
    const request = parseRequest(decode(payload));
    options.table.touch(request.session);
    const ctx: ExecutionContext = { ...options, session: request.session, deadline };
    const lease = options.table.leaseMs;
    let response: InvokeResponse;
    try {
      response = { v: PROGRAM_VERSION, ok: true, value: (await execute(request, ctx)).value, lease };
    } catch (thrown) {
      if (thrown instanceof SpliceError) throw thrown;
      response = { v: PROGRAM_VERSION, ok: false, error: asError(thrown), lease };
    }
    return { payload: encodeResponse(response, ctx), threw: !response.ok };
  };
}

function encodeResponse(response: InvokeResponse, ctx: ExecutionContext): Uint8Array {
  const made: number[] = [];
  const exportRef = referenceMaker(ctx, ctx.session, made, '(result)');
  try {
    return encode(response, { exportRef });
  } catch (cause) {
    // The client never learns of the references this answer made: they would only take room.
    ctx.table.release(ctx.session, made);
    const reason = SpliceError.from(cause, Code.INTERNAL);
    throw new SpliceError(reason.code, `the result cannot be sent: ${reason.message}`, { cause });
  }
}

/**
 * Makes a reference in `session` for each value that cannot travel by value (noting its id in
 * `made`, so that a failed encoding can release them); `where` names the value in refusals.
 */
export function referenceMaker(
  ctx: { table: ObjectTable; serverId: string },
  session: string,
  made: number[],
  where: string,
): (value: object) => RemoteRef {
  return (value) => {
    // A host intrinsic nested in a value (`{ f: Function }`) must not become a callable reference.
    checkValue(value, [where]);
    const id = ctx.table.add(session, value);
    made.push(id);
    return new RemoteRef(
      ctx.serverId,
      id,
      typeof value === 'function' ? 'function' : 'object',
      labelOf(value),
    );
  };
}

/** A module may throw anything; the client always receives an Error. */
function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  const error = new Error(typeof thrown === 'string' ? thrown : `non-error thrown: ${describe(thrown)}`);
  error.name = 'NonErrorThrown';
  return error;
}

function labelOf(value: object): string {
  if (typeof value === 'function') return value.name || 'function';
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === 'string' && name ? name : 'Object';
}
