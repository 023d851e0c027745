/**
 * Python modules used from Node through the pod-manager, all real: pip installs numpy, pandas and
 * a fixture module into their own virtual environments (from a loopback index of real wheels), the
 * Python module-server serves each over gRPC, and the client calls them as it calls Node modules.
 */
import * as diagnostics from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import { connect, kw, NDArray, RemoteError, type SpliceError } from '@splice-orc/client';
import { BATCH_TYPE, decode, encode, RemoteRef } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, fixture, http, isAlive, startPodManager, type TestPodManager } from './harness.js';
import { type PackageIndex, servePackageIndex, wheelhouse } from './python-index.mjs';

let index: PackageIndex;
let pm: TestPodManager;
let np: any;
let pd: any;
let fx: any;
/** Set in the pod-manager's environment: no Python module may see it. */
const SECRET = 'pod-manager-secret-value-0123456789';

async function failure(promise: Promise<unknown>): Promise<SpliceError> {
  try {
    await promise;
  } catch (error) {
    return error as SpliceError;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  index = await servePackageIndex(await wheelhouse());
  process.env.SPLICE_E2E_POD_MANAGER_SECRET = SECRET;
  pm = await startPodManager(
    {
      numpy: { runtime: 'python', package: 'numpy>=2,<3' },
      pandas: { runtime: 'python', package: 'pandas>=2.2,<3', dependency: ['python-dateutil'] },
      pyfixture: { runtime: 'python', package: fixture('pyfixture') },
    },
    { python_index_url: index.url },
  );
  np = pm.client.module('numpy');
  pd = pm.client.module('pandas');
  fx = pm.client.module('pyfixture');
  // Installs (pip, from the loopback index) and starts all three before the first test's clock runs.
  await Promise.all(
    ['numpy', 'pandas', 'pyfixture'].map(async (name) => {
      // pip on a busy machine may take more than the helper's default 30 s.
      const loaded = await http(`${pm.url}/modules/${name}/load`, { method: 'POST', timeoutMs: 240_000 });
      if (loaded.status !== 200) throw new Error(`${name}: ${JSON.stringify(loaded.body)}`);
    }),
  );
}, 300_000);

afterAll(async () => {
  delete process.env.SPLICE_E2E_POD_MANAGER_SECRET;
  await pm?.[Symbol.asyncDispose]();
  await index?.close();
});

const callsServed = async (module: string) =>
  (await http(`${pm.url}/modules/${module}`)).body.calls_served as number;

describe('Python modules from Node', () => {
  it("runs jac-splice-orc's example, numpy.sum(numpy.array([1, 2, 3, 4])), as one invocation", async () => {
    const before = await callsServed('numpy');
    expect(await np.sum(np.array([1, 2, 3, 4]))).toBe(10);
    expect(await callsServed('numpy')).toBe(before + 1);
  });

  it('returns ndarrays by value, as NDArrays, and takes them back', async () => {
    const arr = await np.array([1.5, 2.5, -0.5]);
    expect(arr).toBeInstanceOf(NDArray);
    expect(arr).toMatchObject({ dtype: 'float64', shape: [3] });
    expect((await np.multiply(arr, 2)).toArray()).toEqual([3, 5, -1]);
    const matrix = NDArray.from(
      [
        [1, 2],
        [3, 4],
      ],
      'float64',
    );
    expect((await np.sum(matrix, kw({ axis: 0 }))).toArray()).toEqual([4, 6]);
    expect((await np.linalg.inv(matrix)).toArray()).toEqual([
      [expect.closeTo(-2), expect.closeTo(1)],
      [expect.closeTo(1.5), expect.closeTo(-0.5)],
    ]);
    // 64-bit integers are bigints: exact past 2^53.
    expect((await np.array([2 ** 53, 1], kw({ dtype: 'int64' }))).toArray()).toEqual([2n ** 53n, 1n]);
    // A typed array arrives as an ndarray of its type.
    expect(await np.sum(new Float64Array([1, 2, 3.5]))).toBe(6.5);
    const big = new NDArray(
      'float64',
      [1000, 1000],
      Float64Array.from({ length: 1_000_000 }, (_, i) => i),
    );
    const doubled = await np.multiply(big, 2);
    expect(doubled.shape).toEqual([1000, 1000]);
    expect(doubled.data[999_999]).toBe(1_999_998);
  });

  it('maps values both ways as the contract says', async () => {
    const when = new Date('2026-12-01T10:20:30.456Z');
    const values = [
      null,
      true,
      42,
      -0,
      1.5,
      Number.NaN,
      2n ** 70n,
      'text ✓',
      [1, [2, 'x']],
      { a: 1, nested: { b: [true] } },
      new Map<unknown, unknown>([
        [1, 'one'],
        ['k', 2],
      ]),
      new Set([1, 'two']),
      when,
      Buffer.from([0, 255, 7]),
      new Uint8Array([1, 2]),
    ];
    expect(await fx.kinds(...values)).toEqual({
      args: [
        'NoneType',
        'bool',
        'int',
        'float',
        'float',
        'float',
        'BigInt',
        'str',
        'list',
        'dict',
        'dict',
        'set',
        'datetime',
        'bytes',
        // A typed array arrives as a numpy array where numpy is installed, else as array.array.
        'array',
      ],
      kwargs: [],
    });
    for (const value of values) {
      const back = await fx.echo(value);
      expect(back).toEqual(value);
    }
    expect(Object.is(await fx.echo(-0), -0)).toBe(true);
    expect(await fx.echo(when)).toEqual(when);
  });

  it('passes keyword arguments with kw(), last', async () => {
    expect(await fx.greet('Ada', kw({ greeting: 'hi' }))).toBe('hi, Ada!');
    expect(await fx.greet(kw({ name: 'Grace', punctuation: '?' }))).toBe('hello, Grace?');
    expect((await np.linspace(0, 1, kw({ num: 5 }))).toArray()).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(await fx.kinds(1, kw({ b: 2, a: 1 }))).toEqual({ args: ['int'], kwargs: ['a', 'b'] });
    const misplaced = await failure(fx.kinds(kw({ a: 1 }), 2));
    expect(misplaced.code).toBe('INVALID_ARGUMENT');
    expect(misplaced.message).toMatch(/keyword arguments/);
  });

  it('keeps objects remote as references: a DataFrame, a chain on it, a class instance, release', async () => {
    const df = await pd.DataFrame({ k: ['a', 'b', 'a'], v: [1, 2, 3] });
    expect(inspect(df)).toMatch(/^\[Remote pandas:DataFrame#\d+@\w+\]$/);
    expect(await df.shape).toEqual([3, 2]);
    expect(await df.groupby('k').mean().to_dict()).toEqual({ v: { a: 2, b: 2 } });
    expect(await df.__getitem__('v').sum()).toBe(6);
    expect(await pd.Series([1, 2, 3]).mean()).toBe(2);
    const counter = await new fx.Counter(5);
    expect(await counter.increment(2).increment().get()).toBe(8);
    expect(await counter.value).toBe(8);
    const objects = async () => (await http(`${pm.url}/modules/pyfixture`)).body.server.objects as number;
    const held = await objects();
    await pm.client.release(counter);
    expect(await objects()).toBe(held - 1);
    await expect(counter.get()).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await pm.client.release(df);
  });

  it('answers calls batched together (auto-batching) each on its own, as the Node server does', async () => {
    const requests: string[] = [];
    const onRequest = (message: unknown) => {
      const { request } = message as { request: { headers: unknown } };
      requests.push(Array.isArray(request.headers) ? request.headers.join('\n') : String(request.headers));
    };
    diagnostics.subscribe('undici:request:create', onRequest);
    try {
      const outcomes = await Promise.allSettled([
        fx.sleep(0.2),
        ...[1, 2, 3, 4, 5].map((i) => fx.add(i, i)),
        fx.fail('in a batch'),
        np.sum(np.array([1, 2, 3])),
      ]);
      expect(outcomes.slice(1, 6).map((o) => (o as PromiseFulfilledResult<number>).value)).toEqual([
        2, 4, 6, 8, 10,
      ]);
      expect((outcomes[6] as PromiseRejectedResult).reason.message).toBe(
        'ValueError in remote module pyfixture: in a batch',
      );
      expect((outcomes[7] as PromiseFulfilledResult<number>).value).toBe(6);
      expect(requests.filter((h) => h.includes(BATCH_TYPE)).length).toBeGreaterThanOrEqual(1);
    } finally {
      diagnostics.unsubscribe('undici:request:create', onRequest);
    }
  });

  it('iterates a Python generator from Node with for await; break runs its finally', async () => {
    await fx.reset_iteration();
    const all: unknown[] = [];
    for await (const i of fx.count(150)) all.push(i);
    expect(all).toEqual(Array.from({ length: 150 }, (_, i) => i));
    for await (const i of await fx.count(10_000)) {
      if (i === 3) break;
    }
    expect(await fx.iteration).toEqual({ produced: expect.any(Number), closed: 2 });
    expect(((await fx.iteration) as { produced: number }).produced).toBeLessThanOrEqual(150 + 128);
    const seen: unknown[] = [];
    const error = await (async () => {
      for await (const i of fx.fails_at(2)) seen.push(i);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([0, 1]);
    expect(error).toMatchObject({ message: expect.stringContaining('no item 2') });
  });

  it('runs batch jobs over a Python module, per input on two workers and per split', async () => {
    const inputs = Array.from({ length: 300 }, (_, i) => (i % 2 ? i : `s${i}`));
    const perInput = await pm.client.jobs.run({
      module: 'pyfixture',
      fn: 'echo',
      inputs,
      workers: 2,
      split_size: 50,
    });
    expect(perInput).toEqual(inputs);
    const perSplit = await pm.client.jobs.run({
      module: 'pyfixture',
      fn: 'echo',
      batch: true,
      inputs,
      split_size: 100,
    });
    expect(perSplit).toEqual(inputs);
    const failing = await pm.client.jobs.submit({
      module: 'pyfixture',
      fn: 'fail',
      inputs: ['bad input'],
      return_errors: true,
      max_retries: 0,
    });
    expect((await failing.done({ pollMs: 50 })).failed).toBe(1);
    for await (const r of failing.results())
      expect(r.error?.message).toBe('ValueError in remote module pyfixture: bad input');
  });

  it('passes a stream from Node to a Python function as an iterator, with flow control', async () => {
    async function* chunks() {
      for (let i = 0; i < 40; i++) yield new Uint8Array(64 * 1024).fill(i);
    }
    expect(await fx.byte_length(chunks())).toBe(40 * 64 * 1024);
    let produced = 0;
    let stopped = false;
    async function* endless() {
      try {
        for (;;) yield ++produced;
      } finally {
        stopped = true;
      }
    }
    expect(await fx.read_first(endless(), 5)).toEqual([1, 2, 3, 4, 5]);
    expect(produced).toBeLessThanOrEqual(5 + 64 + 64 + 1);
    await expect.poll(() => stopped).toBe(true);
    async function* failing() {
      yield 'a';
      throw new Error('disk went away');
    }
    await expect(fx.collect(failing())).rejects.toMatchObject({
      message: expect.stringContaining("the client's stream failed: disk went away"),
    });
  });

  it('passes functions of the Node app to a Python module, which calls them synchronously', async () => {
    expect(await fx.map_with([1, 2, 3], (x: number) => x * 2)).toEqual([2, 4, 6]);
    // an async function: the Python call waits for its settled value
    expect(await fx.map_with(['a'], async (s: string) => `${s}!`)).toEqual(['a!']);
    // a function the app's function returns is a callback too
    expect(await fx.call_returned(() => (x: number) => x * 3, 14)).toBe(42);
    const refusing = () => {
      throw new RangeError('not from Node');
    };
    expect(await fx.try_call(refusing, 1)).toEqual({
      ok: false,
      type: 'RemoteError',
      message: 'not from Node',
    });
  });

  it('forgets the functions a Python module lets go of: fresh functions in a loop do not pile up', async () => {
    await using own = connect(pm.url, { timeoutMs: 20_000 });
    const mod = own.module('pyfixture');
    for (let i = 0; i < 100; i++) expect(await mod.map_with([i], (x: number) => x + 1)).toEqual([i + 1]);
    // CPython frees each stub when map_with returns; the server says so and the app forgets them.
    await eventually(() => own.liveCallbacks() === 0, 10_000, 'no live callback in the app');
  });

  it('raises Python exceptions as RemoteErrors, with the traceback and the cause', async () => {
    const error = (await failure(fx.fail('bad input'))) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.remoteName).toBe('ValueError');
    expect(error.message).toBe('ValueError in remote module pyfixture: bad input');
    expect(error.remoteStack).toMatch(/pyfixture\.py", line \d+, in fail/);
    // As for Node modules: the cause is the remote error as thrown; its own cause follows.
    const thrown = error.cause as Error;
    expect(thrown.name).toBe('ValueError');
    expect(thrown.cause).toBeInstanceOf(Error);
    expect((thrown.cause as Error).name).toBe('KeyError');
    expect((thrown.cause as Error).message).toBe("'inner'");
    const numpyError = (await failure(np.reshape([1, 2, 3], [2, 2]))) as RemoteError;
    expect(numpyError.remoteName).toBe('ValueError');
    expect(numpyError.message).toMatch(/cannot reshape array of size 3/);
  });

  it('refuses the paths out of a module with PERMISSION_DENIED (403)', async () => {
    const attempts = [
      () => fx.__class__,
      () => fx.add.__globals__,
      () => fx.environment.__globals__,
      () => fx.Counter.__init__.__globals__,
      () => fx.Counter.__subclasses__(),
      () => fx.__builtins__,
      () => fx.__import__('os'),
      () => fx.__dict__,
      () => fx.add.__code__,
      () => fx.Counter.__reduce__,
      () => fx.Counter.mro(),
      () => fx._private,
      () => fx.os.system('id'),
      () => fx.os.environ,
      () => fx.time.sleep(1),
      () => np.f2py.os.system('id'),
      () => np.f2py.subprocess.run(['id']),
      () => np.f2py.sys.modules,
      () => np.load.__globals__,
      () => np.ma.core.builtins.eval('1'),
      () => np.ctypeslib.ctypes,
      () => pd.io.common.os,
      () => pd.eval('1 + 1'),
      () => pd.read_pickle('/etc/passwd'),
      () => pd.DataFrame({ a: [1] }).query('a > 0'),
    ];
    for (const attempt of attempts) {
      const error = await failure(attempt());
      expect(error.code, String(attempt)).toBe('PERMISSION_DENIED');
      expect(error.details).toMatchObject({ httpStatus: 403 });
    }
  });

  it("keeps the pod-manager's secrets and files out of a module's reach", async () => {
    const seen = (await fx.environment()) as Record<string, string>;
    expect(Object.values(seen)).not.toContain(SECRET);
    expect(Object.keys(seen).some((k) => k.includes('SPLICE_SERVER_SECRET'))).toBe(false);
    for (const path of [`/proc/${process.pid}/environ`, '/proc/self/environ', '/etc/passwd', pm.configPath]) {
      const error = (await failure(fx.read(path))) as RemoteError;
      expect(error.remoteName, path).toBe('PermissionError');
    }
  });

  it('ends a hung call at its deadline while the server keeps answering', async () => {
    const hung = await failure(pm.client.call(fx.sleep(60), { timeoutMs: 1_000 }));
    expect(hung.code).toBe('DEADLINE_EXCEEDED');
    expect(await fx.add(1, 2)).toBe(3);
    expect((await http(`${pm.url}/modules/pyfixture`)).body.state).toBe('ready');
  });

  it('answers a call whose server dies under it cleanly, and serves the next on a new server', async () => {
    const firstPid = (await fx.pid()) as number;
    const died = await failure(fx.crash());
    expect(died.code).toBe('UNAVAILABLE');
    expect(died.message).toMatch(/went away during the call/);
    await eventually(() => !isAlive(firstPid), 5_000, 'the server to be gone');
    const nextPid = await fx.pid();
    expect(nextPid).not.toBe(firstPid);
    expect((await http(`${pm.url}/modules/pyfixture`)).body).toMatchObject({ state: 'ready', restarts: 1 });
  });
});

describe('installing Python modules', () => {
  it("fails the seed config's pandas dependency 'dateutil' with pip's own words", async () => {
    await using seeded = await startPodManager(
      { pandas: { runtime: 'python', package: 'pandas>=2.2,<3', dependency: ['dateutil'] } },
      { python_index_url: index.url },
    );
    const loaded = await http(`${seeded.url}/modules/pandas/load`, { method: 'POST' });
    expect(loaded.status).toBe(502);
    expect(loaded.body.error.code).toBe('INSTALL_FAILED');
    expect(loaded.body.error.message).toMatch(/No matching distribution found for dateutil/);
  }, 120_000);

  it('refuses to place a Python module local: a Node client cannot import it', async () => {
    const load = await http(`${pm.url}/modules/numpy/load`, { method: 'POST', body: { mode: 'local' } });
    expect(load.status).toBe(400);
    expect(load.body.error.message).toMatch(/numpy is a Python module/);
    expect((await http(`${pm.url}/modules/numpy`)).body.mode).toBe('remote');
  });

  it("frees the references of a client that disappears when its lease expires, and keeps a live client's", async () => {
    await using short = await startPodManager(
      { pyfixture: { runtime: 'python', package: fixture('pyfixture') } },
      { python_index_url: index.url, lease_ms: 300 },
    );
    const live = await new (short.client.module('pyfixture') as any).Counter(5);
    // A raw client that makes a reference and is never heard from again.
    const response = await fetch(`${short.url}/modules/pyfixture/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: encode({
        v: 1,
        session: 'ghost',
        ops: [{ op: 'new', target: null, path: ['Counter'], args: [1] }],
      }),
    });
    expect(decode(new Uint8Array(await response.arrayBuffer()))).toMatchObject({
      ok: true,
      value: expect.any(RemoteRef),
    });
    const objects = async () => (await http(`${short.url}/modules/pyfixture`)).body.server.objects;
    expect(await objects()).toBe(2);
    await eventually(async () => (await objects()) === 1, 10_000, "the ghost's lease to expire");
    await new Promise((r) => setTimeout(r, 900)); // three leases: the live client renews its own
    expect(await live.increment().get()).toBe(6);
    expect(await objects()).toBe(1);
  }, 120_000);

  it('refuses a requirement that is an installer option', async () => {
    const put = await http(`${pm.url}/modules/pyfixture/config`, {
      method: 'PUT',
      body: {
        runtime: 'python',
        package: fixture('pyfixture'),
        dependency: ['--index-url=http://127.0.0.1:9/'],
      },
    });
    expect(put.status).toBe(400);
    expect(put.body.error.message).toMatch(/may not start with -/);
  });
});
