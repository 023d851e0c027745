/**
 * The value codec: msgpack (msgpackr) with extension types for what plain msgpack loses. This is the
 * only file that touches msgpackr.
 *
 * Plain data travels by value: null, undefined, booleans, numbers (-0 keeps its sign), bigint,
 * strings, Date, Uint8Array/Buffer, every typed array (as the same type), ArrayBuffer, DataView,
 * RegExp, arrays, plain objects, Map and Set, nested freely, and errors (name, message, stack, code,
 * cause). Anything else is handed to `exportRef`, which decides how it travels (a remote reference,
 * a pipelined slot), or refuses it.
 *
 * The byte layouts are a contract of their own, written in `proto/INVOKE.md` with golden vectors in
 * `proto/vectors/` (checked by `vectors.test.ts`): change them there first.
 */
import { addExtension, Packr } from 'msgpackr';
import { SpliceError } from './errors.js';
import { Kwargs, NDARRAY_DTYPES, NDArray, type NDArrayData, type NDArrayDType } from './python-values.js';
import { Code } from './status.js';

/**
 * A handle to an object that stays on the module-server. `server` names the server instance that
 * holds it, so a reference that outlived its server is recognised as such and, with several
 * replicas, a call can be routed to the holder.
 */
export class RemoteRef {
  constructor(
    /** Id of the module-server instance that holds the object. */
    readonly server: string,
    /** Id of the object in that server's table for the session. */
    readonly id: number,
    /** `function` when the remote value is callable. */
    readonly kind: 'function' | 'object',
    /** Constructor or function name, for messages and inspection. */
    readonly label: string,
  ) {}
}

/** The result of an earlier operation of the same invocation program (promise pipelining). */
export class Slot {
  constructor(readonly index: number) {}
}

/** Longest id of a callback reference. */
export const MAX_CALLBACK_ID_LENGTH = 64;

/**
 * A function of the app passed as an argument (INVOKE.md 3.7): the module receives a function that
 * calls it back. `id` is chosen by the client (random, unguessable); `label` is the function's name,
 * for messages only.
 */
export class CallbackRef {
  constructor(
    readonly id: string,
    readonly label: string,
  ) {}
}

/** Options of {@link encode}. */
export interface EncodeOptions {
  /** Turns a value that cannot travel by value into a RemoteRef or Slot; throws to refuse it. */
  exportRef?: (value: object) => RemoteRef | Slot | CallbackRef;
}

/** Options of {@link decode}. */
export interface DecodeOptions {
  /** Turns a decoded RemoteRef into the local stand-in for it (the client's proxy). */
  importRef?: (ref: RemoteRef) => unknown;
}

/**
 * How deep a value may nest before it is refused, well below the V8 stack limit: the one limit of
 * every value encoded or decoded (msgpack payloads, JSON bodies of the REST API).
 */
export const MAX_DEPTH = 256;

const EXT_BIGINT = 1;
const EXT_MAP = 2;
const EXT_ERROR = 3;
const EXT_REF = 4;
const EXT_SLOT = 5;
const EXT_REGEXP = 6;
const EXT_NDARRAY = 7;
const EXT_KWARGS = 8;
const EXT_CALLBACK = 9;
/** msgpackr's own type for Set ('s'), kept: it is how Sets have always travelled. */
const EXT_SET = 0x73;
/**
 * Extension types msgpackr reads by default that no splice-orc payload uses (its bigint 'B',
 * bundled strings 'b', error 'e', structured-clone id 'i' and pointer 'p', RegExp 'x'): refused
 * like any unknown type, so that the TypeScript decoder accepts what the contract lists and no more.
 */
const MSGPACKR_ONLY_TYPES = [0x42, 0x62, 0x65, 0x69, 0x70, 0x78];

class WireBigInt {
  constructor(readonly value: bigint) {}
}
class WireMap {
  constructor(readonly entries: unknown[]) {}
}
class WireSet {
  constructor(readonly items: unknown[]) {}
}
class WireError {
  constructor(readonly fields: Record<string, unknown>) {}
}
class WireRegExp {
  constructor(
    readonly source: string,
    readonly flags: string,
  ) {}
}
/** Negative zero, which msgpackr would write as the integer 0 (`-0 === 0`), losing its sign. */
class WireNegativeZero {}
const NEGATIVE_ZERO = new WireNegativeZero();

/** What msgpackr's `allocateForWrite` hands an extension that writes its own bytes. */
interface RawTarget {
  target: Uint8Array;
  targetView: DataView;
  position: number;
}

let importHook: DecodeOptions['importRef'];

addExtension({
  Class: WireBigInt,
  type: EXT_BIGINT,
  write: (v: WireBigInt) => v.value.toString(16),
  read: (hex: unknown) => {
    if (typeof hex !== 'string' || !/^-?[0-9a-f]+$/i.test(hex)) throw malformed('bigint');
    return hex.startsWith('-') ? -BigInt(`0x${hex.slice(1)}`) : BigInt(`0x${hex}`);
  },
});
addExtension({
  Class: WireMap,
  type: EXT_MAP,
  write: (v: WireMap) => v.entries,
  read: (flat: unknown) => {
    if (!Array.isArray(flat) || flat.length % 2 !== 0) throw malformed('Map');
    const map = new Map<unknown, unknown>();
    for (let i = 0; i < flat.length; i += 2) map.set(flat[i], flat[i + 1]);
    return map;
  },
});
addExtension({
  Class: WireSet,
  type: EXT_SET,
  write: (v: WireSet) => v.items,
  read: (items: unknown) => {
    if (!Array.isArray(items)) throw malformed('Set');
    return new Set(items);
  },
});
addExtension({
  Class: WireError,
  type: EXT_ERROR,
  write: (v: WireError) => v.fields,
  read: (fields: unknown) => {
    if (fields === null || typeof fields !== 'object' || !isPlainObject(fields)) throw malformed('error');
    return errorFromFields(fields as Record<string, unknown>);
  },
});
addExtension({
  Class: RemoteRef,
  type: EXT_REF,
  write: (r: RemoteRef) => [r.server, r.id, r.kind, r.label],
  read: (fields: unknown) => {
    const [server, id, kind, label] = Array.isArray(fields) && fields.length === 4 ? fields : [];
    if (
      typeof server !== 'string' ||
      !Number.isSafeInteger(id) ||
      (kind !== 'function' && kind !== 'object') ||
      typeof label !== 'string'
    ) {
      throw malformed('remote reference');
    }
    const ref = new RemoteRef(server, id, kind, label);
    return importHook ? importHook(ref) : ref;
  },
});
addExtension({
  Class: Slot,
  type: EXT_SLOT,
  write: (s: Slot) => s.index,
  read: (index: unknown) => {
    if (!Number.isSafeInteger(index) || (index as number) < 0) throw malformed('slot');
    return new Slot(index as number);
  },
});
addExtension({
  Class: CallbackRef,
  type: EXT_CALLBACK,
  write: (c: CallbackRef) => [c.id, c.label],
  read: (fields: unknown) => {
    const [id, label] = Array.isArray(fields) && fields.length === 2 ? fields : [];
    if (
      typeof id !== 'string' ||
      id.length === 0 ||
      id.length > MAX_CALLBACK_ID_LENGTH ||
      typeof label !== 'string'
    ) {
      throw malformed('callback reference');
    }
    return new CallbackRef(id, label);
  },
});

addExtension({
  Class: WireRegExp,
  type: EXT_REGEXP,
  write: (r: WireRegExp) => [r.source, r.flags],
  read: (fields: unknown) => regExpFromFields(fields),
});

/** A RegExp from its `[source, flags]`; anything the engine would not compile is refused. */
function regExpFromFields(fields: unknown): RegExp {
  const [source, flags] = Array.isArray(fields) && fields.length === 2 ? fields : [];
  if (typeof source !== 'string' || typeof flags !== 'string') throw malformed('regular expression');
  try {
    return new RegExp(source, flags);
  } catch (cause) {
    throw new SpliceError(
      Code.INVALID_ARGUMENT,
      `malformed regular expression in payload: ${messageOf(cause)}`,
      { cause },
    );
  }
}

addExtension({
  Class: NDArray,
  type: EXT_NDARRAY,
  // The elements as raw bytes (bin), little-endian, C order: no per-element boxing either way.
  write: (a: NDArray) => [a.dtype, a.shape, Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength)],
  read: (fields: unknown) => ndarrayFromFields(fields),
});
addExtension({
  Class: Kwargs,
  type: EXT_KWARGS,
  write: (k: Kwargs) => k.values,
  read: (values: unknown) => {
    if (values === null || typeof values !== 'object' || !isPlainObject(values))
      throw malformed('keyword arguments');
    return new Kwargs(values as Record<string, unknown>);
  },
});

/** An NDArray from `[dtype, shape, bytes]`; anything that does not describe one exactly is refused. */
function ndarrayFromFields(fields: unknown): NDArray {
  const [dtype, shape, bytes] = Array.isArray(fields) && fields.length === 3 ? fields : [];
  const Typed =
    typeof dtype === 'string' && Object.hasOwn(NDARRAY_DTYPES, dtype)
      ? NDARRAY_DTYPES[dtype as NDArrayDType]
      : undefined;
  if (
    !Typed ||
    !Array.isArray(shape) ||
    !shape.every((n) => Number.isSafeInteger(n) && n >= 0) ||
    !Buffer.isBuffer(bytes) ||
    bytes.byteLength !== shape.reduce((a: number, b: number) => a * b, 1) * Typed.BYTES_PER_ELEMENT
  ) {
    throw malformed('NDArray');
  }
  // A copy: the element type's alignment, and no view into the payload's buffer.
  const copy = new Uint8Array(bytes).buffer;
  return new NDArray(dtype as NDArrayDType, shape as number[], new Typed(copy) as NDArrayData);
}

/**
 * Negative zero is written as the float64 it is (`cb 80 00 00 00 00 00 00 00`), which every msgpack
 * decoder reads back as -0. No msgpackr option does that, so an extension writes the nine bytes
 * itself through `allocateForWrite`, as msgpackr's own Date extension does. An extension needs a
 * type number, which also names a decoder: type 127 is one no payload uses, and reading it is
 * refused like any unknown extension.
 */
addExtension({
  Class: WireNegativeZero,
  type: 127,
  // msgpackr's typings know `pack` only as returning the data of an ext value.
  pack: writeNegativeZero as unknown as NonNullable<Parameters<typeof addExtension>[0]['pack']>,
  unpack: () => refuseType(127),
});
for (const type of MSGPACKR_ONLY_TYPES) addExtension({ type, unpack: () => refuseType(type) });

function refuseType(type: number): never {
  throw new SpliceError(Code.INVALID_ARGUMENT, `unknown extension type ${type} in payload`);
}

function malformed(what: string): SpliceError {
  return new SpliceError(Code.INVALID_ARGUMENT, `malformed ${what} in payload`);
}

function writeNegativeZero(_value: WireNegativeZero, allocateForWrite: (size: number) => RawTarget): void {
  const { target, targetView, position } = allocateForWrite(9);
  target[position] = 0xcb;
  targetView.setFloat64(position + 1, -0);
}

const packr = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true });

/** Encodes a value to msgpack bytes. Throws INVALID_ARGUMENT for a value that cannot be sent. */
export function encode(value: unknown, options: EncodeOptions = {}): Uint8Array {
  return packr.pack(toWire(value, options.exportRef, new Set(), 0));
}

/** Decodes msgpack bytes. Throws INVALID_ARGUMENT for bytes that are not a valid message. */
export function decode(bytes: Uint8Array, options: DecodeOptions = {}): unknown {
  const previous = importHook;
  importHook = options.importRef;
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (cause) {
    if (cause instanceof SpliceError) throw cause;
    // msgpackr reads nested values recursively: far past the limit, the stack runs out first.
    if (cause instanceof RangeError && /call stack/i.test(cause.message)) throw tooDeep();
    throw new SpliceError(Code.INVALID_ARGUMENT, `payload is not valid msgpack: ${messageOf(cause)}`, {
      cause,
    });
  } finally {
    importHook = previous;
  }
  checkDepth(value);
  return value;
}

/**
 * Refuses a value that nests deeper than `max` levels (arrays, plain objects, Maps, Sets, errors'
 * fields; typed arrays, Dates, RegExps, references and slots are leaves), with INVALID_ARGUMENT
 * naming the limit. Iterative: a deep value cannot exhaust the stack.
 */
export function checkDepth(value: unknown, max = MAX_DEPTH): void {
  if (value === null || typeof value !== 'object') return;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object' || isLeaf(v)) continue;
    if (depth >= max) throw tooDeep(max);
    const children = Array.isArray(v)
      ? v
      : v instanceof Map
        ? [...v.keys(), ...v.values()]
        : v instanceof Set
          ? [...v]
          : v instanceof Kwargs
            ? Object.values(v.values)
            : Object.values(v);
    for (const child of children) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
}

/** Objects that travel whole, not as a container of values: they add no level of nesting. */
function isLeaf(value: object): boolean {
  return (
    ArrayBuffer.isView(value) ||
    value instanceof Date ||
    value instanceof RegExp ||
    value instanceof ArrayBuffer ||
    value instanceof RemoteRef ||
    value instanceof Slot ||
    value instanceof CallbackRef ||
    value instanceof NDArray
  );
}

function tooDeep(max = MAX_DEPTH): SpliceError {
  return new SpliceError(
    Code.INVALID_ARGUMENT,
    `value nests deeper than ${max} levels (the limit of every value sent to or from splice-orc)`,
    { details: { limit: 'depth', max } },
  );
}

/** True for an object whose prototype is Object.prototype or null: the only objects sent by value. */
export function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function toWire(
  value: unknown,
  exportRef: EncodeOptions['exportRef'],
  seen: Set<object>,
  depth: number,
): unknown {
  switch (typeof value) {
    case 'bigint':
      return new WireBigInt(value);
    case 'number':
      return Object.is(value, -0) ? NEGATIVE_ZERO : value;
    case 'function':
      return exportOrRefuse(value, exportRef);
    case 'symbol':
      throw new SpliceError(Code.INVALID_ARGUMENT, `cannot send ${String(value)}: symbols have no wire form`);
    case 'object':
      break;
    default:
      return value;
  }
  if (value === null || ArrayBuffer.isView(value) || value instanceof Date) return value;
  if (value instanceof ArrayBuffer || value instanceof RemoteRef || value instanceof Slot) return value;
  if (value instanceof CallbackRef) return value;
  if (value instanceof NDArray) return value;
  // As structured clone does: the pattern and its flags, not lastIndex or other properties.
  if (value instanceof RegExp) return new WireRegExp(value.source, value.flags);
  if (depth >= MAX_DEPTH) throw tooDeep();
  if (seen.has(value)) {
    throw new SpliceError(Code.INVALID_ARGUMENT, 'cannot send a cyclic value by value');
  }
  seen.add(value);
  try {
    return composite(value, exportRef, seen, depth + 1);
  } finally {
    seen.delete(value);
  }
}

function composite(
  value: object,
  exportRef: EncodeOptions['exportRef'],
  seen: Set<object>,
  depth: number,
): unknown {
  const walk = (v: unknown) => toWire(v, exportRef, seen, depth);
  if (Array.isArray(value)) return value.map(walk);
  if (value instanceof Map) {
    const flat: unknown[] = [];
    for (const [k, v] of value) flat.push(walk(k), walk(v));
    return new WireMap(flat);
  }
  if (value instanceof Set) return new WireSet(Array.from(value, walk));
  if (value instanceof Error) return new WireError(errorFields(value, walk));
  if (value instanceof Kwargs) {
    const values: Record<string, unknown> = {};
    for (const key of Object.keys(value.values)) values[key] = walk(value.values[key]);
    return new Kwargs(values);
  }
  if (!isPlainObject(value)) return exportOrRefuse(value, exportRef);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) out[key] = walk((value as Record<string, unknown>)[key]);
  return out;
}

function exportOrRefuse(
  value: object,
  exportRef: EncodeOptions['exportRef'],
): RemoteRef | Slot | CallbackRef {
  if (exportRef) return exportRef(value);
  throw new SpliceError(
    Code.INVALID_ARGUMENT,
    `cannot send ${describe(value)} by value, and no remote reference can be made for it here`,
  );
}

function errorFields(error: Error, walk: (v: unknown) => unknown): Record<string, unknown> {
  const fields: Record<string, unknown> = { name: error.name, message: error.message };
  if (error.stack !== undefined) fields.stack = error.stack;
  for (const key of Object.keys(error)) {
    const v = (error as unknown as Record<string, unknown>)[key];
    if (v === null || (typeof v !== 'object' && typeof v !== 'function')) fields[key] = walk(v);
  }
  if (error.cause !== undefined) fields.cause = safeWalk(error.cause, walk);
  if (error instanceof AggregateError) fields.errors = safeWalk(error.errors, walk);
  return fields;
}

/** An error's cause is context, not payload: if it cannot be sent, its description is. */
function safeWalk(value: unknown, walk: (v: unknown) => unknown): unknown {
  try {
    return walk(value);
  } catch {
    return describe(value);
  }
}

const errorClasses: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

function errorFromFields(fields: Record<string, unknown>): Error {
  const { name, message, stack, cause, errors, ...rest } = fields;
  const Ctor = (typeof name === 'string' && errorClasses[name]) || Error;
  const error: Error = Array.isArray(errors)
    ? new AggregateError(errors, String(message ?? ''))
    : new Ctor(String(message ?? ''));
  if (typeof name === 'string' && error.name !== name) {
    Object.defineProperty(error, 'name', { value: name, writable: true, configurable: true });
  }
  if (typeof stack === 'string') error.stack = stack;
  if (cause !== undefined) error.cause = cause;
  Object.assign(error, rest);
  return error;
}

/** A short human description of a value for messages: its kind and constructor name. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value !== 'object') return typeof value;
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === 'string' && name ? `an instance of ${name}` : 'an object';
}

function messageOf(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
