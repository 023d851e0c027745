/**
 * Functions of the app passed to a module (INVOKE.md 3.7), through the real pod-manager and a
 * module-server: the module calls them synchronously and sees plain values, or gets promises from
 * async ones; errors cross both ways; kept callbacks reach the app after the call until released
 * or the session ends; deadlines bound what waits; an app that goes away fails what waits for it.
 */
import { spawn } from 'node:child_process';
import { connect, type SpliceClient } from '@splice-orc/client';
import { encode } from '@splice-orc/protocol';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eventually, fixture, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let client: SpliceClient;
let calc: any;

beforeAll(async () => {
  pm = await startPodManager({ calc: { package: fixture('calc') } });
  client = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
  calc = client.module('calc');
  await calc.clearListeners();
});
afterAll(async () => {
  await client.close();
  await pm[Symbol.asyncDispose]();
});
beforeEach(async () => {
  await calc.clearListeners();
});

describe('callbacks', () => {
  it('runs functions the module calls synchronously and gives it plain values', async () => {
    expect(await calc.mapWith([1, 2, 3], (x: number) => x * 2)).toEqual([2, 4, 6]);
    expect(await calc.sortWith([3, 1, 2], (a: number, b: number) => b - a)).toEqual([3, 2, 1]);
    expect(await calc.kindOfResult(() => 7)).toBe('number');
    // anywhere in the argument tree
    expect(await calc.callNested({ deep: [{ f: (x: number) => x + 1 }] }, 41)).toBe(42);
    // a function the app's function returns is a callback too
    expect(await calc.kindOfResult(() => (x: number) => x)).toBe('function');
    expect(await calc.callReturned(() => (x: number) => x * 3, 14)).toBe(42);
    // 300 calls of one callback in one module call
    const squares = await calc.mapWith(
      Array.from({ length: 300 }, (_, i) => i),
      (x: number) => x * x,
    );
    expect(squares[299]).toBe(299 * 299);
  });

  it('gives the module a promise for an async function, and its rejection', async () => {
    expect(await calc.kindOfResult(async () => 7)).toBe('promise');
    expect(await calc.mapAsync([1, 2, 3], async (x: number) => x + 10)).toEqual([11, 12, 13]);
    await expect(
      calc.awaitCallback(async () => {
        throw new TypeError('async no');
      }, 1),
    ).rejects.toThrow(/async no/);
    expect(await calc.callbackLog.failures).toEqual(['async no']);
  });

  it('throws the error of the app’s function in the module, and rejects the call when the module lets it escape', async () => {
    const thrower = () => {
      throw new RangeError('out of range here');
    };
    expect(await calc.tryCall(thrower)).toEqual({
      ok: false,
      name: 'RangeError',
      message: 'out of range here',
    });
    await expect(calc.mapWith([1], thrower)).rejects.toThrow(/out of range here/);
  });

  it('keeps callbacks the module stores: they reach the app after the call, until released', async () => {
    const seen: number[] = [];
    const listener = (v: number) => {
      seen.push(v);
      return v * 3;
    };
    expect(await calc.on(listener)).toBe(1);
    // the same function passed again is the same function in the module
    expect(await calc.on(listener)).toBe(1);
    expect(await calc.emit(5)).toEqual([15]);
    expect(seen).toEqual([5]);
    // called later, after the call that passed it returned (a progress callback)
    let arrived: (value: unknown) => void = () => {};
    const later = new Promise((resolve) => {
      arrived = resolve;
    });
    expect(await calc.callLater((v: string) => arrived(v), 50, 'later')).toBe(true);
    expect(await later).toBe('later');
    await client.release(listener);
    // The stub refuses at once when the release reached the server first; else the app refuses.
    expect(await calc.emit(6)).toEqual([
      expect.stringMatching(
        /^threw: (this callback was released by the app|callback listener was released by the app and can no longer be called)$/,
      ),
    ]);
    expect(seen).toEqual([5]);
  });

  it('forgets functions module code no longer holds: fresh functions passed in a loop do not pile up', async () => {
    await using own = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
    const mod = own.module('calc');
    const kept = (v: number) => v + 1;
    expect(await mod.on(kept)).toBe(1);
    for (let i = 0; i < 300; i++) expect(await mod.mapWith([i], (x: number) => x * 2)).toEqual([i * 2]);
    // The module-server's collector takes the 300 stubs; the app hears of it and forgets them.
    await eventually(
      async () => (await mod.collectGarbage()) && own.liveCallbacks() === 1,
      10_000,
      `one live callback, not ${own.liveCallbacks()}`,
    );
    // The one the module keeps still reaches the app, and the same function keeps working.
    expect(await mod.emit(1)).toEqual([2]);
    expect(await mod.mapWith([1, 2], kept)).toEqual([2, 3]);
    await mod.clearListeners();
  });

  it('hands the app references to module objects, usable once the callback has returned', async () => {
    let matrix: any;
    let timesTen: any;
    expect(
      await calc.withObject((m: unknown, f: unknown) => {
        matrix = m;
        timesTen = f;
        return 'kept';
      }),
    ).toBe('kept');
    expect(await matrix.size()).toEqual([2, 2]);
    expect(await calc.det(matrix)).toBe(-2);
    expect(await timesTen(4)).toBe(40);
  });

  it('ends the call at its deadline while the module awaits a callback that never settles', async () => {
    const never = () => new Promise(() => {});
    await expect(client.call(calc.awaitCallback(never, 1), { timeoutMs: 600 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(await calc.add(1, 2)).toBe(3);
  });

  it('bounds a synchronous callback’s wait by the call’s deadline: the module is free again', async () => {
    const busy = () => {
      const end = Date.now() + 1_500;
      while (Date.now() < end) {
        // the app's function keeps its own thread busy
      }
      return 'too late';
    };
    await expect(client.call(calc.tryCall(busy), { timeoutMs: 600 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(await calc.add(2, 2)).toBe(4);
    expect((await calc.callbackLog.failures)[0]).toMatch(/was not answered by the app within \d+ ms/);
  });

  it('fails what waits for a callback of an app that closed its client', async () => {
    const other = connect(pm.url, { timeoutMs: 20_000, reportIntervalMs: 0 });
    const theirs: any = other.module('calc');
    await theirs.on((v: number) => v + 1);
    expect(await calc.emit(1)).toEqual([2]);
    await other.close();
    expect(await calc.emit(1)).toEqual([
      "threw: callback anonymous: the app's session has ended: its callbacks can no longer be called",
    ]);
  });

  /** Starts an app in a process of its own running `body`; resolves once it prints `ready`. */
  async function appProcess(body: string) {
    const script = `
      import { connect } from '@splice-orc/client';
      const client = connect(${JSON.stringify(pm.url)}, { timeoutMs: 60000, reportIntervalMs: 0 });
      const calc = client.module('calc');
      setInterval(() => {}, 1000);
      ${body}
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`the app exited early (${code})`)));
    });
    return child;
  }

  it('fails the module’s next call of a kept callback at once when the app’s process dies', async () => {
    const child = await appProcess(`
      await calc.on((v) => v * 10);
      process.stdout.write('ready\\n');
    `);
    expect(await calc.emit(2)).toEqual([20]);
    child.kill('SIGKILL');
    // The dead app's waiting exchange goes with its connection: a moment for that to reach the
    // server (a request sent to the app in that moment fails when no exchange of it comes back).
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    expect(await calc.emit(3)).toEqual([
      'threw: callback anonymous: the app went away (its connection for callbacks closed)',
    ]);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('fails a pending callback at once when the app’s process dies', async () => {
    const child = await appProcess(`
      calc.awaitCallback(() => {
        setTimeout(() => process.stdout.write('ready\\n'), 300);
        return new Promise(() => {});
      }, 1).catch(() => {});
    `);
    const killed = Date.now();
    child.kill('SIGKILL');
    await eventually(async () => (await calc.callbackLog.failures).length > 0, 5_000, 'the failure');
    expect(Date.now() - killed).toBeLessThan(5_000);
    expect((await calc.callbackLog.failures)[0]).toMatch(/the app went away/);
  });

  it('keeps an app that only waits to be called back alive when asked to, and lets it exit otherwise', async () => {
    const run = async (keepAlive: boolean) => {
      const script = `
        import { connect } from '@splice-orc/client';
        const client = connect(${JSON.stringify(pm.url)}, {
          timeoutMs: 60000, reportIntervalMs: 0, keepAliveForCallbacks: ${keepAlive},
        });
        const got = await new Promise((resolve) => {
          client.module('calc').callLater((v) => resolve(v), 300, 'late').then(() => {});
        });
        process.stdout.write('got ' + got + '\\n');
        const closing = Date.now();
        await client.close();
        // close() ends the waiting exchange (it must not wait out its 20 s)
        if (Date.now() - closing > 10000) process.stdout.write('close waited\\n');
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
      });
      const code = await new Promise((resolve) => child.once('exit', resolve));
      return { code, out };
    };
    expect(await run(true)).toEqual({ code: 0, out: 'got late\n' });
    // Nothing but the long poll pending: Node ends the process (13: a top-level await left unsettled).
    expect(await run(false)).toEqual({ code: 13, out: '' });
  });

  it('refuses what is not a callbacks program on its route, naming the problem', async () => {
    const post = (name: string, body: Uint8Array | string, type: string) =>
      fetch(`${pm.url}/modules/${name}/callbacks`, {
        method: 'POST',
        body,
        headers: { 'content-type': type },
      });
    const json = await post('calc', '{}', 'application/json');
    expect(json.status).toBe(415);
    expect(((await json.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const call = encode({
      v: 1,
      session: 's',
      ops: [{ op: 'call', target: null, path: ['add'], args: [1, 2] }],
    });
    const notExchange = await post('calc', call, 'application/msgpack');
    expect(notExchange.status).toBe(400);
    expect(((await notExchange.json()) as { error: { message: string } }).error.message).toMatch(
      /takes only the callbacks operation/,
    );
    const garbage = await post('calc', new Uint8Array([0xc1]), 'application/msgpack');
    expect(garbage.status).toBe(400);
    const unknown = await http(`${pm.url}/modules/nope/callbacks`, { method: 'POST', body: {} });
    expect(unknown.status).toBe(404);
  });
});
