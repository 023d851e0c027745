/**
 * Values that exist for Python modules: an n-dimensional array (numpy's ndarray) that travels by
 * value as dtype, shape and raw bytes, and keyword arguments for a call. Both are plain classes
 * that any side may hold; the codec gives them extension types 7 and 8 (proto/INVOKE.md).
 */
import { SpliceError } from './errors.js';
import { Code } from './status.js';

/** The element types an NDArray carries by value, as numpy names them. */
export const NDARRAY_DTYPES = {
  bool: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

/** A numpy dtype name that travels by value. */
export type NDArrayDType = keyof typeof NDARRAY_DTYPES;

/** The typed array holding the elements of a dtype. */
export type NDArrayData<D extends NDArrayDType = NDArrayDType> = InstanceType<(typeof NDARRAY_DTYPES)[D]>;

/** Nested arrays of an NDArray's elements (numbers, or bigints for 64-bit integers). */
export type NestedArray = Array<number | bigint | boolean | NestedArray>;

/**
 * An n-dimensional array by value: `dtype`, `shape` and the elements in C order (row-major) in a
 * typed array of the matching type (`bool` as 0/1 in a Uint8Array, 64-bit integers as bigints).
 * numpy's ndarray of these dtypes arrives as one and goes back to Python as the same ndarray.
 */
export class NDArray<D extends NDArrayDType = NDArrayDType> {
  constructor(
    readonly dtype: D,
    readonly shape: readonly number[],
    readonly data: NDArrayData<D>,
  ) {
    if (!Object.hasOwn(NDARRAY_DTYPES, dtype)) throw invalid(`unknown dtype '${String(dtype)}'`);
    if (!shape.every((n) => Number.isSafeInteger(n) && n >= 0))
      throw invalid('shape must be non-negative integers');
    if (!(data instanceof NDARRAY_DTYPES[dtype]))
      throw invalid(`data of a ${dtype} array must be a ${NDARRAY_DTYPES[dtype].name}`);
    if (data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw invalid(`${data.length} elements do not fill the shape [${shape.join(', ')}]`);
    }
  }

  /** Number of elements. */
  get size(): number {
    return this.data.length;
  }

  /** The elements as nested arrays (booleans for `bool`). */
  toArray(): NestedArray | number | bigint | boolean {
    const values = Array.from(this.data as ArrayLike<number | bigint>, (v) =>
      this.dtype === 'bool' ? v !== 0 : v,
    );
    if (this.shape.length === 0) return values[0] as number;
    const build = (dim: number, offset: number): NestedArray => {
      const length = this.shape[dim]!;
      if (dim === this.shape.length - 1) return values.slice(offset, offset + length) as NestedArray;
      const stride = this.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length }, (_, i) => build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }

  /** An NDArray from nested arrays of numbers (rectangular), of the given dtype. */
  static from<D extends NDArrayDType>(nested: unknown, dtype: D): NDArray<D> {
    const shape: number[] = [];
    for (let level = nested; Array.isArray(level); level = level[0]) shape.push(level.length);
    const flat = shape.length === 0 ? [nested] : (nested as unknown[]).flat(shape.length - 1 || 0);
    if (flat.length !== shape.reduce((a, b) => a * b, 1))
      throw invalid('the nested arrays are not rectangular');
    const Typed = NDARRAY_DTYPES[dtype] as unknown as { from(values: unknown[]): NDArrayData<D> };
    const values = dtype === 'bool' ? flat.map((v) => (v ? 1 : 0)) : flat;
    return new NDArray(dtype, shape, Typed.from(values));
  }
}

/**
 * Keyword arguments of one call to a Python module: `np.linspace(0, 1, kw({ num: 5 }))`. It must be
 * the last argument; a Node module refuses it.
 */
export class Kwargs {
  constructor(readonly values: Readonly<Record<string, unknown>>) {}
}

/** Keyword arguments for a call to a Python module (the last argument). */
export function kw(values: Record<string, unknown>): Kwargs {
  return new Kwargs(values);
}

function invalid(why: string): SpliceError {
  return new SpliceError(Code.INVALID_ARGUMENT, `invalid NDArray: ${why}`);
}
