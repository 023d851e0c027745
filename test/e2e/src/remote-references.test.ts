import { inspect } from 'node:util';
import { decode, encode, RemoteRef } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let calc: any;

beforeAll(async () => {
  pm = await startPodManager();
  calc = pm.client.module('calc');
});
afterAll(async () => {
  await pm[Symbol.asyncDispose]();
});

const heldObjects = async () => (await http(`${pm.url}/modules/calc`)).body.server.objects as number;

describe('remote references end to end', () => {
  it('keeps class instances remote and lets them be used as targets and arguments', async () => {
    const m = await calc.matrix([
      [1, 2],
      [3, 4],
    ]);
    expect(inspect(m)).toMatch(/^\[Remote calc:Matrix#\d+@\w+\]$/);
    expect(await calc.det(m)).toBe(-2);
    expect(await m.size()).toEqual([2, 2]);
    const scaled = await m.scale(10);
    expect(await scaled.get(1, 1)).toBe(40);
    await pm.client.release(m, scaled);
  });

  it('reads property paths by awaiting them', async () => {
    expect(await calc.version).toBe('1.0.0');
    expect(await calc.constants.pi).toBe(Math.PI);
  });

  it('sends a pipelined chain as one invocation', async () => {
    const before = (await http(`${pm.url}/modules/calc`)).body.calls_served;
    expect(
      await calc.det(
        calc
          .matrix([
            [2, 0],
            [0, 3],
          ])
          .scale(2),
      ),
    ).toBe(24);
    expect((await http(`${pm.url}/modules/calc`)).body.calls_served).toBe(before + 1);
  });

  it('constructs remote classes with new', async () => {
    const m = await new calc.Matrix([[7]]);
    expect(await m.get(0, 0)).toBe(7);
    await pm.client.release(m);
  });

  it('calls remote functions held as references', async () => {
    const add10 = await calc.makeAdder(10);
    expect(await add10(5)).toBe(15);
    expect(await calc.apply(add10, 1)).toBe(11);
    await pm.client.release(add10);
  });

  it('frees the server object on release, and refuses the reference afterwards', async () => {
    const before = await heldObjects();
    const m = await calc.matrix([[1]]);
    expect(await heldObjects()).toBe(before + 1);
    await pm.client.release(m);
    expect(await heldObjects()).toBe(before);
    await expect(m.size()).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/was released/),
    });
  });

  it('frees the server object with await using', async () => {
    const before = await heldObjects();
    {
      await using m = await calc.matrix([[1]]);
      expect(await m.size()).toEqual([1, 1]);
      expect(await heldObjects()).toBe(before + 1);
    }
    expect(await heldObjects()).toBe(before);
  });

  it('frees the server object when the proxy is garbage collected', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'tests run with --expose-gc').toBeTypeOf('function');
    const before = await heldObjects();
    await (async () => {
      const m = await calc.matrix([[1]]);
      expect(await m.size()).toEqual([1, 1]);
    })();
    expect(await heldObjects()).toBe(before + 1);
    await eventually(
      async () => {
        gc!();
        await new Promise((r) => setTimeout(r, 50));
        return (await heldObjects()) === before;
      },
      15_000,
      'the collected reference to be released',
    );
  });

  it('does not leak server objects over many calls whose references are simply dropped', async () => {
    const before = await heldObjects();
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 50 }, async (_, i) => (await calc.matrix([[i]])).size()));
    }
    await eventually(
      async () => {
        (globalThis as { gc?: () => void }).gc!();
        await new Promise((r) => setTimeout(r, 100));
        return (await heldObjects()) === before;
      },
      20_000,
      'all 1000 dropped references to be released',
    );
  });

  it('runs a pipelined program right after a reference was collected, with its slots intact', async () => {
    const held = await calc.matrix([
      [1, 0],
      [0, 1],
    ]);
    await (async () => {
      await calc.matrix([[5]]); // dropped at once: its release waits for the next call to its server
    })();
    for (let i = 0; i < 5; i++) {
      (globalThis as { gc?: () => void }).gc!();
      await new Promise((r) => setTimeout(r, 20));
    }
    // Uses slots (scale -> size), and carries the pending release with it.
    expect(await held.scale(2).size()).toEqual([2, 2]);
    expect(
      await calc.det(
        calc.matrix([
          [2, 0],
          [0, 2],
        ]),
      ),
    ).toBe(4);
    await pm.client.release(held);
  });

  it('keeps references alive past the lease while the client holds them', async () => {
    await using short = await startPodManager(undefined, { lease_ms: 300 });
    const c = short.client.module('calc') as any;
    const m = await c.matrix([[5]]);
    await new Promise((r) => setTimeout(r, 1_200));
    expect(await m.get(0, 0)).toBe(5);
  });

  it('frees the references of a client that disappears when its lease expires', async () => {
    await using short = await startPodManager(undefined, { lease_ms: 300 });
    // A raw client that makes references and is never heard from again.
    const program = encode({
      v: 1,
      session: 'ghost',
      ops: [{ op: 'call', target: null, path: ['matrix'], args: [[[5]]] }],
    });
    const response = await fetch(`${short.url}/modules/calc/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: program,
    });
    expect(decode(new Uint8Array(await response.arrayBuffer()))).toMatchObject({
      ok: true,
      value: expect.any(RemoteRef),
    });
    const objects = async () => (await http(`${short.url}/modules/calc`)).body.server.objects;
    expect(await objects()).toBe(1);
    await eventually(async () => (await objects()) === 0, 10_000, 'the lease to expire');
  });
});
