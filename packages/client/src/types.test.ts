import { describe, expectTypeOf, it } from 'vitest';
import type { Remote, RemoteChain } from './types.js';

/** A module's type as `typeof import('x')` would give it. */
declare class Matrix {
  rows: number[][];
  size(): [number, number];
  scale(k: number): Matrix;
}
interface MathModule {
  pi: number;
  version: string;
  matrix(rows: number[][]): Matrix;
  det(m: Matrix): number;
  mean(values: number[]): number;
  later(): Promise<{ ok: boolean }>;
  Matrix: typeof Matrix;
}

describe('Remote<T>', () => {
  it('turns property reads into awaitable chains of the property type', () => {
    expectTypeOf<Awaited<Remote<MathModule>['pi']>>().toEqualTypeOf<number>();
  });

  it('turns calls into chains that resolve to plain data by value', () => {
    type Mean = ReturnType<Remote<MathModule>['mean']>;
    expectTypeOf<Awaited<Mean>>().toEqualTypeOf<number>();
    expectTypeOf<Awaited<ReturnType<Remote<MathModule>['later']>>>().toEqualTypeOf<{ ok: boolean }>();
  });

  it('resolves objects with methods to remote references, usable as arguments', () => {
    type M = Awaited<ReturnType<Remote<MathModule>['matrix']>>;
    expectTypeOf<M>().toEqualTypeOf<Remote<Matrix>>();
    expectTypeOf<Awaited<ReturnType<M['size']>>>().toEqualTypeOf<[number, number]>();
    expectTypeOf<Remote<MathModule>['det']>()
      .parameter(0)
      .toMatchTypeOf<Matrix | Remote<Matrix> | RemoteChain<Matrix>>();
  });

  it('makes classes constructible remotely', () => {
    type Ctor = Remote<MathModule>['Matrix'];
    expectTypeOf<Awaited<InstanceType<Ctor>>>().toEqualTypeOf<Remote<Matrix>>();
  });

  it('leaves an untyped module untyped', () => {
    expectTypeOf<Remote<any>>().toBeAny();
  });
});

describe('the typing of imports that go remote (README)', () => {
  // What an app declares for `import math, { det } from 'mathjs'` under the import hook.
  const math = {} as Remote<MathModule>;
  const det = {} as Remote<MathModule['det']>;

  it('makes every call a promise of its value, never the value', () => {
    expectTypeOf(det).returns.toMatchTypeOf<PromiseLike<number>>();
    expectTypeOf(math.mean).returns.toMatchTypeOf<PromiseLike<number>>();
    // Only compiled (never run): the compiler must refuse a remote call's result as a number.
    const misuse = () => {
      // @ts-expect-error: a remote call gives a promise of its value
      const value: number = det(math.matrix([[1]]));
      return value;
    };
    expectTypeOf(misuse).returns.toBeNumber();
  });
});
