/**
 * The JSON form of an invocation, so that curl works: one operation on a path from the module root,
 * answered with a JSON-safe value. Clients that need references, pipelining or exact types use
 * msgpack.
 */
import { type Op, PROGRAM_VERSION, RemoteRef, type Rest } from '@splice-orc/protocol';

/** The one-operation program for a JSON body, in a throw-away session. */
export function programFromJson(
  body: Rest.JsonInvokeBody,
  session: string,
): { v: number; session: string; ops: Op[] } {
  const path = Array.isArray(body.path) ? body.path : body.path.split('.').filter(Boolean);
  const op = body.op ?? (body.args ? 'call' : 'get');
  const ops: Op[] =
    op === 'get' ? [{ op, target: null, path }] : [{ op, target: null, path, args: body.args ?? [] }];
  return { v: PROGRAM_VERSION, session, ops };
}

/** A decoded value made JSON-safe: exact types are lost, references are described. */
export function jsonFromValue(value: unknown, refs: RemoteRef[] = []): unknown {
  const walk = (v: unknown): unknown => {
    if (v === undefined) return null;
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
    if (v === null || typeof v !== 'object') return v;
    if (v instanceof RemoteRef) {
      refs.push(v);
      return { $ref: { kind: v.kind, label: v.label } };
    }
    if (v instanceof Date) return v.toISOString();
    // A RegExp arrives by value; its own properties are none, so it is written as a literal.
    if (v instanceof RegExp) return v.toString();
    if (v instanceof Uint8Array) return { $base64: Buffer.from(v).toString('base64') };
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<unknown>, walk);
    if (Array.isArray(v)) return v.map(walk);
    if (v instanceof Set) return [...v].map(walk);
    if (v instanceof Map) return [...v].map(([k, x]) => [walk(k), walk(x)]);
    if (v instanceof Error) return errorJson(v);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
  };
  return walk(value);
}

/** An error's JSON form: name, message, code, stack and cause. */
export function errorJson(error: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { name: error.name, message: error.message };
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (error.stack) out.stack = error.stack;
  if (error.cause !== undefined)
    out.cause = error.cause instanceof Error ? errorJson(error.cause) : jsonFromValue(error.cause);
  return out;
}
