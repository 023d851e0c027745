import { connect } from '@splice-orc/client';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { startPodManager } from './harness.js';

describe('the README example, with the real mathjs from npm and its types', () => {
  it('runs as written', async () => {
    await using pm = await startPodManager(
      { mathjs: { package: 'mathjs@13' } },
      { start_timeout_ms: 120_000 },
    );
    const orc = connect(pm.url, { timeoutMs: 120_000 });
    const math = orc.module<typeof import('mathjs')>('mathjs');
    const m = await math.matrix([
      [1, 2],
      [3, 4],
    ]);
    const det = await math.det(m);
    expectTypeOf(det).toEqualTypeOf<number>();
    expect(det).toBe(-2);
    const size = await m.size();
    expectTypeOf(size).toEqualTypeOf<number[]>();
    expect(size).toEqual([2, 2]);
    const pi = await math.pi;
    expectTypeOf(pi).toEqualTypeOf<number>();
    expect(pi).toBe(Math.PI);
    expect(
      await math.det(
        math.matrix([
          [2, 0],
          [0, 3],
        ]),
      ),
    ).toBe(6);
    const unit = await new math.Unit(5, 'cm');
    expect(await unit.toNumber('mm')).toBe(50);
    await orc.release(m, unit);
    await orc.close();
  }, 180_000);
});
