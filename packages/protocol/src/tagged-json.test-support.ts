/**
 * The tagged JSON form of the golden vectors (`proto/vectors/*.json`, described in
 * `proto/INVOKE.md`), turned into the JavaScript value it describes. Test-only: the codec never
 * reads JSON.
 *
 * JSON null, booleans, numbers, strings and arrays are themselves; a JSON object is a plain object
 * unless one of its keys starts with `$`, in which case it is a tag with exactly that one key.
 */
import { CallbackRef, RemoteRef, Slot } from './codec.js';
import { Kwargs, NDARRAY_DTYPES, NDArray, type NDArrayData, type NDArrayDType } from './python-values.js';

/** A value of the tagged JSON form, as JSON.parse returns it. */
export type Tagged = null | boolean | number | string | Tagged[] | { [key: string]: Tagged };

const specialNumbers: Record<string, number> = {
  '-0': -0,
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  '-Infinity': Number.NEGATIVE_INFINITY,
};

const errorClasses: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

const typedArrays: Record<string, new (values: unknown[]) => ArrayBufferView> = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array: BigInt64Array as unknown as new (values: unknown[]) => ArrayBufferView,
  BigUint64Array: BigUint64Array as unknown as new (values: unknown[]) => ArrayBufferView,
};

type Tag = (body: Tagged) => unknown;

const tags: Record<string, Tag> = {
  $number: (name) => {
    const n = specialNumbers[name as string];
    if (n === undefined) throw new Error(`unknown special number ${JSON.stringify(name)}`);
    return n;
  },
  $undefined: () => undefined,
  $bigint: (decimal) => BigInt(decimal as string),
  $bytes: (hex) => Buffer.from(hex as string, 'hex'),
  $typed: (body) => typedFromTagged(body as { type: string; values?: Tagged[]; bytes?: string }),
  $date: (ms) => new Date(ms === 'invalid' ? Number.NaN : (ms as number)),
  $map: (entries) =>
    new Map((entries as Tagged[][]).map(([k, v]) => [valueFromTagged(k!), valueFromTagged(v!)])),
  $set: (items) => new Set((items as Tagged[]).map(valueFromTagged)),
  $error: (fields) => errorFromTagged(fields as Record<string, Tagged>),
  $ref: (body) => {
    const { server, id, kind, label } = body as { server: string; id: number; kind: string; label: string };
    return new RemoteRef(server, id, kind as 'function' | 'object', label);
  },
  $slot: (index) => new Slot(index as number),
  $callback: (body) => {
    const { id, label } = body as { id: string; label: string };
    return new CallbackRef(id, label);
  },
  $regexp: (body) => {
    const { source, flags } = body as { source: string; flags: string };
    return new RegExp(source, flags);
  },
  $ndarray: (body) => {
    const { dtype, shape, values } = body as { dtype: NDArrayDType; shape: number[]; values: Tagged[] };
    const elements = values.map((v) =>
      dtype === 'bool' ? (v ? 1 : 0) : dtype.endsWith('int64') ? BigInt(v as string) : valueFromTagged(v),
    );
    const Typed = NDARRAY_DTYPES[dtype] as unknown as { from(values: unknown[]): NDArrayData };
    return new NDArray(dtype, shape, Typed.from(elements));
  },
  $kwargs: (values) => new Kwargs(valueFromTagged(values) as Record<string, unknown>),
  $object: (entries) =>
    Object.fromEntries((entries as Tagged[][]).map(([k, v]) => [k as string, valueFromTagged(v!)])),
};

/** The value a tagged JSON value describes. Throws on an unknown or malformed tag. */
export function valueFromTagged(tagged: Tagged): unknown {
  if (tagged === null || typeof tagged !== 'object') return tagged;
  if (Array.isArray(tagged)) return tagged.map(valueFromTagged);
  const keys = Object.keys(tagged);
  const tagKey = keys.find((k) => k.startsWith('$'));
  if (tagKey === undefined) return Object.fromEntries(keys.map((k) => [k, valueFromTagged(tagged[k]!)]));
  const tag = tags[tagKey];
  if (!tag || keys.length !== 1) throw new Error(`not a tag: ${JSON.stringify(tagged)}`);
  return tag(tagged[tagKey]!);
}

function typedFromTagged({ type, values, bytes }: { type: string; values?: Tagged[]; bytes?: string }) {
  if (type === 'ArrayBuffer' || type === 'DataView') {
    const buffer = new Uint8Array(Buffer.from(bytes ?? '', 'hex')).buffer;
    return type === 'ArrayBuffer' ? buffer : new DataView(buffer);
  }
  const Ctor = typedArrays[type];
  if (!Ctor || !values) throw new Error(`not a typed array: ${type}`);
  const big = type.startsWith('Big');
  return new Ctor(values.map((v) => (big ? BigInt(v as string) : valueFromTagged(v))));
}

/**
 * An error as a JavaScript program would make it: the class its name or `errors` field calls for,
 * a non-enumerable cause, no stack unless one is given, and the other fields as own properties.
 */
function errorFromTagged(tagged: Record<string, Tagged>): Error {
  const { name, message, stack, cause, errors, ...rest } = tagged;
  const options = cause === undefined ? undefined : { cause: valueFromTagged(cause) };
  const Ctor = errorClasses[name as string] ?? Error;
  const error: Error = Array.isArray(errors)
    ? new AggregateError(errors.map(valueFromTagged), message as string, options)
    : new Ctor(message as string, options);
  if (error.name !== name) {
    Object.defineProperty(error, 'name', { value: name, writable: true, configurable: true });
  }
  if (typeof stack === 'string') error.stack = stack;
  else delete error.stack;
  for (const [key, value] of Object.entries(rest)) {
    (error as unknown as Record<string, unknown>)[key] = valueFromTagged(value);
  }
  return error;
}
