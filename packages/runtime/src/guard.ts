/**
 * What an invocation may reach: only what the module exports. Path segments that lead to the
 * Function constructor, to prototypes or to accessor tricks are refused by name, and any value that
 * is one of the engine's dangerous intrinsics (Function, eval, process, globalThis, require...) is
 * refused by identity wherever it turns up, so that no chain of gets and calls can escape the module.
 */
import { createRequire } from 'node:module';
import { Code, SpliceError } from '@splice-orc/protocol';

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
]);

/** Refuses a path segment by name. */
export function checkKey(key: string, path: readonly string[]): void {
  if (FORBIDDEN_KEYS.has(key)) {
    throw new SpliceError(
      Code.PERMISSION_DENIED,
      `access to '${key}' is not allowed (path ${formatPath(path)}): only what the module exports can be reached`,
    );
  }
}

/** Refuses a value that is one of the dangerous intrinsics, wherever it came from. */
export function checkValue(value: unknown, path: readonly string[]): void {
  if ((typeof value === 'function' || typeof value === 'object') && forbiddenValues.has(value)) {
    throw new SpliceError(
      Code.PERMISSION_DENIED,
      `${formatPath(path)} leads to a host intrinsic, which invocations may not reach`,
    );
  }
}

/** A path as a readable expression, for messages: `a.b[0].c`. */
export function formatPath(path: readonly string[]): string {
  if (path.length === 0) return '(module)';
  return path
    .map((k, i) => (/^[A-Za-z_$][\w$]*$/.test(k) ? (i === 0 ? k : `.${k}`) : `[${JSON.stringify(k)}]`))
    .join('');
}
