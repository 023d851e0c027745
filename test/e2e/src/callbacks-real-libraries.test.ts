/**
 * Functions of the app passed to real npm libraries through the pod-manager: lodash's map, filter
 * and sortBy, mathjs's map, and an EventEmitter delivering 1,000 events to an app handler.
 */
import { connect, type SpliceClient } from '@splice-orc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let client: SpliceClient;

beforeAll(async () => {
  pm = await startPodManager(
    {
      lodash: { package: 'lodash@4' },
      mathjs: { package: 'mathjs@13' },
      calc: { package: fixture('calc') },
    },
    { start_timeout_ms: 120_000 },
  );
  client = connect(pm.url, { timeoutMs: 120_000, reportIntervalMs: 0 });
}, 180_000);
afterAll(async () => {
  await client.close();
  await pm[Symbol.asyncDispose]();
});

describe('callbacks into real libraries', () => {
  it('lodash map, filter and sortBy take the app’s functions', async () => {
    const _: any = client.module('lodash');
    const rows = [
      { name: 'pear', price: 3 },
      { name: 'fig', price: 1 },
      { name: 'apple', price: 2 },
    ];
    expect(await _.map(rows, (r: { price: number }) => r.price * 2)).toEqual([6, 2, 4]);
    expect(await _.filter(rows, (r: { price: number }) => r.price > 1)).toEqual([rows[0], rows[2]]);
    expect(await _.sortBy(rows, (r: { name: string }) => r.name)).toEqual([rows[2], rows[1], rows[0]]);
  });

  it('mathjs map applies the app’s function to every element of a matrix', async () => {
    const math: any = client.module('mathjs');
    const m = await math.matrix([
      [1, 2],
      [3, 4],
    ]);
    const doubled = await math.map(m, (x: number) => x * 2);
    expect(await doubled.toArray()).toEqual([
      [2, 4],
      [6, 8],
    ]);
    expect(await math.map([1, 4, 9], (x: number) => Math.sqrt(x))).toEqual([1, 2, 3]);
  });

  it('an EventEmitter delivers 1,000 events to the app’s handler, in order', async () => {
    const calc: any = client.module('calc');
    const em = await calc.emitter();
    const seen: number[] = [];
    await em.on('data', (event: { i: number }) => {
      seen.push(event.i);
    });
    expect(await calc.emitMany(em, 'data', 1_000)).toBe(1);
    expect(seen).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
  });
});
