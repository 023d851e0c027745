/**
 * Types of the remote form of a module: every property read, call and construction becomes a
 * chain that can be awaited. Awaiting gives plain data by value and anything with methods as a
 * remote reference, typed `Remote<T>`.
 */

// biome-ignore lint/suspicious/noExplicitAny: matches any function type, as the standard library does
type Fn = (...args: any[]) => any;
// biome-ignore lint/suspicious/noExplicitAny: matches any constructor type
type Ctor = abstract new (...args: any[]) => any;
type IsAny<T> = 0 extends 1 & T ? true : false;
type Primitive = string | number | bigint | boolean | symbol | null | undefined;

/** Objects that travel by value keep their type; objects with methods come back as references. */
export type Resolved<T> =
  IsAny<T> extends true
    ? // biome-ignore lint/suspicious/noExplicitAny: an untyped module stays untyped
      any
    : T extends Primitive | Date | ArrayBufferView | ArrayBuffer | Error
      ? T
      : T extends Fn | Ctor
        ? Remote<T>
        : T extends readonly unknown[]
          ? { -readonly [K in keyof T]: Resolved<T[K]> }
          : T extends Map<infer K, infer V>
            ? Map<Resolved<K>, Resolved<V>>
            : T extends Set<infer U>
              ? Set<Resolved<U>>
              : HasMethods<T> extends true
                ? Remote<T>
                : { [K in keyof T]: Resolved<T[K]> };

type HasMethods<T> = true extends { [K in keyof T]: T[K] extends Fn ? true : false }[keyof T] ? true : false;

/** An argument may be the value, a remote reference to it, or a pending chain that yields it. */
export type RemoteArg<T> = T | Remote<T> | RemoteChain<T>;
type RemoteArgs<A extends readonly unknown[]> = { [K in keyof A]: RemoteArg<A[K]> };

/** A pending read or call: await it for its value, or keep chaining (sent as one program). */
export type RemoteChain<T> = PromiseLike<Resolved<Awaited<T>>> &
  Promise<Resolved<Awaited<T>>> &
  RemoteShape<Awaited<T>>;

type RemoteShape<T> = (T extends Fn
  ? (...args: RemoteArgs<Parameters<T>>) => RemoteChain<ReturnType<T>>
  : unknown) &
  (T extends Ctor
    ? new (
        ...args: RemoteArgs<ConstructorParameters<T>>
      ) => RemoteChain<InstanceType<T>>
    : unknown) &
  (T extends Primitive
    ? unknown
    : { readonly [K in keyof T as K extends string ? K : never]: RemoteChain<T[K]> });

/** A module root or a remote reference: the remote form of `T`. */
export type Remote<T> =
  IsAny<T> extends true
    ? // biome-ignore lint/suspicious/noExplicitAny: an untyped module stays untyped
      any
    : RemoteShape<T> & { [Symbol.asyncDispose](): Promise<void> };
