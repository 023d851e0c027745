/**
 * `for await` over remote iterators, generators and streams, through the real pod-manager and a
 * module-server: items read in windows with read-ahead and bounded memory, `break` running the
 * generator's `finally`, errors and deadlines per pull.
 */
import { connect, type SpliceClient } from '@splice-orc/client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fixture, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let client: SpliceClient;
let calc: any;
const heldObjects = async () => (await http(`${pm.url}/modules/calc`)).body.server.objects as number;

beforeAll(async () => {
  pm = await startPodManager({ calc: { package: fixture('calc') } });
  client = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0, iterate: { window: 100 } });
  calc = client.module('calc');
  await calc.resetIteration();
});
afterAll(async () => {
  await client.close();
  await pm[Symbol.asyncDispose]();
});
beforeEach(async () => {
  await calc.resetIteration();
});

const collect = async (iterable: AsyncIterable<unknown>) => {
  const out: unknown[] = [];
  for await (const x of iterable) out.push(x);
  return out;
};

describe('iterating remote values', () => {
  it('reads a generator returned as a reference, and one straight from a chain, to the end', async () => {
    const generator = await calc.count(250);
    expect(await collect(generator)).toEqual(Array.from({ length: 250 }, (_, i) => i));
    expect(await collect(calc.count(3))).toEqual([0, 1, 2]);
    expect(await calc.iteration.closed).toBe(2);
  });

  it('reads 100 000 items of an endless generator in bounded windows: the producer is never more than two windows ahead', async () => {
    let seen = 0;
    let furthestAhead = 0;
    for await (const item of calc.forever()) {
      expect((item as { i: number }).i).toBe(seen);
      seen++;
      if (seen % 10_000 === 0) {
        const produced = (await calc.iteration.produced) as number;
        furthestAhead = Math.max(furthestAhead, produced - seen);
      }
      if (seen === 100_000) break;
    }
    expect(furthestAhead).toBeLessThanOrEqual(200);
    // break closed it: the generator's finally ran on the server
    expect(await calc.iteration.closed).toBe(1);
  }, 120_000);

  it('runs the finally of a generator when the loop breaks early, and frees its reference', async () => {
    const before = await heldObjects();
    for await (const i of calc.count(1_000)) {
      if (i === 5) break;
    }
    expect(await calc.iteration.closed).toBe(1);
    expect(await heldObjects()).toBe(before);
  });

  it('passes items of a slow async generator on as they come, not after a full window', async () => {
    const started = Date.now();
    const arrivals: number[] = [];
    for await (const tick of calc.ticks(4, 150)) {
      expect(tick).toBe(`tick ${arrivals.length}`);
      arrivals.push(Date.now() - started);
    }
    // the first item arrived long before the last was produced
    expect(arrivals[0]).toBeLessThan((arrivals[3] as number) - 250);
  });

  it('reads a ReadableStream, and items that stay remote come back as references', async () => {
    expect(await collect(calc.stream(5))).toEqual([0, 1, 2, 3, 4]);
    const sizes: unknown[] = [];
    for await (const m of calc.objects(3)) sizes.push(await (m as any).get(0, 0));
    expect(sizes).toEqual([0, 1, 2]);
  });

  it('throws the error the generator throws, after the items before it', async () => {
    const seen: unknown[] = [];
    const error = await (async () => {
      for await (const x of calc.failsAt(3)) seen.push(x);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([0, 1, 2]);
    expect(error).toMatchObject({
      name: 'RemoteError',
      remoteName: 'RangeError',
      message: expect.stringContaining('no item 3'),
    });
  });

  it('refuses to iterate a value that is not iterable, with a clear error', async () => {
    const error = await collect(calc.constants).catch((e: unknown) => e);
    expect(error).toMatchObject({ message: expect.stringContaining('not iterable') });
  });

  it('throws a clear error in the loop when the module-server dies during the iteration', async () => {
    const seen: unknown[] = [];
    const error = await (async () => {
      for await (const item of calc.forever()) {
        seen.push(item);
        if (seen.length === 10) process.kill((await calc.pid()) as number, 'SIGKILL');
      }
    })().catch((e: unknown) => e);
    expect(seen.length).toBeGreaterThanOrEqual(10);
    expect(error).toMatchObject({
      code: expect.stringMatching(/^(UNAVAILABLE|NOT_FOUND)$/),
      message: expect.stringMatching(/went away|ended|restarted|stopped/),
    });
    // the module is served again by a new server
    expect(await calc.add(1, 2)).toBe(3);
  });

  it('bounds each pull by the call deadline', async () => {
    const slow = connect(pm.url, { timeoutMs: 300, reportIntervalMs: 0 });
    try {
      const error = await collect(slow.module('calc').ticks(2, 2_000)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    } finally {
      await slow.close();
    }
  });
});

describe('streams passed as arguments', () => {
  it('uploads 8 MiB from a ReadableStream, read by the module as it arrives', async () => {
    const chunk = new Uint8Array(64 * 1024).fill(1);
    let sent = 0;
    const upload = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 128) controller.enqueue(chunk);
        else controller.close();
      },
    });
    expect(await calc.byteLength(upload)).toBe(128 * 64 * 1024);
  });

  it('reads an async iterable and a Node Readable the same way, and frees the pipes after the call', async () => {
    const { Readable } = await import('node:stream');
    const before = await heldObjects();
    async function* words() {
      yield 'a';
      yield 'b';
    }
    expect(await calc.collect(words())).toEqual(['a', 'b']);
    expect(await calc.collect(Readable.from(['x', 'y', 'z'], { objectMode: true }))).toEqual(['x', 'y', 'z']);
    expect(await heldObjects()).toBe(before);
  });

  it('flow control: the app reads no further ahead than the module has room for, and stops when it stops', async () => {
    let produced = 0;
    let stopped = false;
    async function* endless() {
      try {
        for (;;) {
          produced++;
          yield produced;
        }
      } finally {
        stopped = true;
      }
    }
    expect(await calc.readFirst(endless(), 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // at most the pipe's 64 waiting chunks and one push of 64 beyond what the module read
    expect(produced).toBeLessThanOrEqual(10 + 64 + 64 + 1);
    await expect.poll(() => stopped).toBe(true);
  });

  it("fails the module's read with the app's error when the app's stream fails", async () => {
    async function* failing() {
      yield 1;
      throw new Error('disk went away');
    }
    await expect(calc.collect(failing())).rejects.toMatchObject({
      message: expect.stringContaining("the client's stream failed: disk went away"),
    });
  });
});
