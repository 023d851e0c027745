/**
 * What an invocation may reach: only what the module exports. Path segments that lead to the
 * Function constructor, to prototypes or to accessor tricks are refused by name, and any value that
 * is one of the engine's dangerous intrinsics (Function, eval, process, globalThis, require...) is
 * refused by identity wherever it turns up, so that no chain of gets and calls can escape the module.
 */
import { createRequire } from 'node:module';
import { Code, isPlainObject, SpliceError } from '@splice-orc/protocol';

/** Property names never followed, whatever object they are read from. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set([
  'constructor',
  '__proto__',
  'prototype',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
  'caller',
  'callee',
  'arguments',
]);

const AsyncFunction = (async () => {}).constructor;
const GeneratorFunction = function* () {}.constructor;
const AsyncGeneratorFunction = async function* () {}.constructor;

/** Values an invocation must never hold: each is a door to arbitrary code or to the host. */
const forbiddenValues: ReadonlySet<unknown> = new Set<unknown>([
  Function,
  AsyncFunction,
  GeneratorFunction,
  AsyncGeneratorFunction,
  Function.prototype,
  Object.prototype,
  // biome-ignore lint/security/noGlobalEval: listed to be refused, never called
  eval,
  globalThis,
  process,
  createRequire,
  createRequire(import.meta.url),
  Reflect,
  Proxy,
  (globalThis as Record<string, unknown>).WebAssembly,
  // Function.prototype.call/apply/bind let a chain re-bind any function it holds to any receiver.
  Function.prototype.call,
  Function.prototype.apply,
  Function.prototype.bind,
]);

const fnToString = Function.prototype.toString;
/** Functions already judged, so that each one's source is read once. */
const compiledCache = new WeakMap<object, boolean>();

/**
 * True for a function compiled at run time from source text by `Function`, `AsyncFunction` and
 * kin. The engine gives each such function the source header `function anonymous(`, which no
 * renaming changes (its `name` property can be redefined, its source text cannot); a module helper
 * that reads properties by name (lodash's `invoke`) could otherwise hand one out. Functions that
 * compiled code defines inside itself (a template's render function) carry no such mark: that is
 * why module-servers run with code generation from strings disallowed unless a module opts in.
 */
function isCompiled(value: unknown): boolean {
  if (typeof value !== 'function') return false;
  let compiled = compiledCache.get(value);
  if (compiled === undefined) {
    let source = '';
    try {
      source = fnToString.call(value);
    } catch {
      // A revoked proxy or the like: not a function compiled from a string.
    }
    compiled = /^(async\s+)?function\s*\*?\s*anonymous\s*\(/.test(source);
    compiledCache.set(value, compiled);
  }
  return compiled;
}

/** Refuses a path segment by name. */
export function checkKey(key: string, path: readonly string[]): void {
  if (FORBIDDEN_KEYS.has(key)) {
    throw new SpliceError(
      Code.PERMISSION_DENIED,
      `access to '${key}' is not allowed (path ${formatPath(path)}): only what the module exports can be reached`,
    );
  }
}

/** Refuses a value that is one of the dangerous intrinsics or a compiled function. */
export function checkValue(value: unknown, path: readonly string[]): void {
  if ((typeof value === 'function' || typeof value === 'object') && value !== null) {
    if (forbiddenValues.has(value) || isCompiled(value)) {
      throw new SpliceError(
        Code.PERMISSION_DENIED,
        `${formatPath(path)} leads to a host intrinsic or to code compiled at run time, which invocations may not reach`,
      );
    }
  }
}

/** How deep {@link checkDeep} looks into plain containers. */
const DEEP_LIMIT = 64;

/**
 * Refuses a value that holds a forbidden one anywhere inside its arrays, plain objects, Maps and
 * Sets: a result kept in a slot, or an argument, could otherwise smuggle one through a container.
 */
export function checkDeep(value: unknown, path: readonly string[]): void {
  const seen = new Set<object>();
  const visit = (v: unknown, depth: number): void => {
    checkValue(v, path);
    if (v === null || typeof v !== 'object' || depth >= DEEP_LIMIT || seen.has(v) || ArrayBuffer.isView(v))
      return;
    seen.add(v);
    if (Array.isArray(v)) for (const item of v) visit(item, depth + 1);
    else if (v instanceof Map)
      for (const [k, item] of v) {
        visit(k, depth + 1);
        visit(item, depth + 1);
      }
    else if (v instanceof Set) for (const item of v) visit(item, depth + 1);
    else if (isPlainObject(v))
      for (const key of Object.keys(v)) visit((v as Record<string, unknown>)[key], depth + 1);
  };
  visit(value, 0);
}

/** A path as a readable expression, for messages: `a.b[0].c`. */
export function formatPath(path: readonly string[]): string {
  if (path.length === 0) return '(module)';
  return path
    .map((k, i) => (/^[A-Za-z_$][\w$]*$/.test(k) ? (i === 0 ? k : `.${k}`) : `[${JSON.stringify(k)}]`))
    .join('');
}
