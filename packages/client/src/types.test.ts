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
