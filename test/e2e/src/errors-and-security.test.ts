import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemoteError, SpliceError } from '@splice-orc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;
let calc: any;

beforeAll(async () => {
  pm = await startPodManager(
    {
      calc: { package: fixture('calc') },
      broken: { package: fixture('broken') },
      missing: { package: 'file:/nonexistent/splice-orc-missing-package' },
    },
    { max_payload_bytes: 256 * 1024 },
  );
  calc = pm.client.module('calc');
});
afterAll(async () => {
  await pm[Symbol.asyncDispose]();
});

async function failure(promise: Promise<unknown>): Promise<SpliceError> {
  try {
    await promise;
  } catch (error) {
    return error as SpliceError;
  }
  throw new Error('expected the call to fail');
}

describe('errors end to end', () => {
  it('throws a remote throw as RemoteError with remote name, message, code, cause and stack', async () => {
    const error = (await failure(calc.fail('bad input'))) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.remoteName).toBe('RangeError');
    expect(error.message).toBe('RangeError in remote module calc: bad input');
    expect(error.remoteCode).toBe('E_CALC');
    expect(error.remoteStack).toMatch(/at (Module\.)?fail \(.*\/calc\/index\.js:\d+:\d+\)/);

    expect((error.cause as Error).cause).toMatchObject({ message: 'root cause' });
  });

  it('throws rejected promises and non-error throws as RemoteErrors', async () => {
    expect(await failure(calc.failLater('later'))).toMatchObject({
      remoteName: 'Error',
      message: expect.stringContaining('later'),
    });
    expect(await failure(calc.throwString())).toMatchObject({ remoteName: 'NonErrorThrown' });
  });

  it('keeps serving after stray exceptions and rejections in module code', async () => {
    const pid = await calc.pid();
    expect(await calc.crashLater()).toBe('ok');
    await new Promise((r) => setTimeout(r, 100));
    expect(await calc.add(1, 2)).toBe(3);
    expect(await calc.pid()).toBe(pid);
  });

  it('refuses Function-constructor escapes with PERMISSION_DENIED (403)', async () => {
    const attempts = [
      () => calc.add.constructor('return process')(),
      () => new calc.add.constructor('return process'),
      // biome-ignore lint/suspicious/noProto: the escape under test
      () => calc.add.__proto__.constructor,

      () => calc.constants.constructor.constructor('return globalThis')(),
      () => calc.Matrix.prototype,
      () => calc.evil.leakFunction(),
      () => calc.evil.leakProcess(),
      () => calc.constants.__defineGetter__('x', 1),
    ];
    for (const attempt of attempts) {
      const error = await failure(attempt());
      expect(error).toBeInstanceOf(SpliceError);
      expect(error.code).toBe('PERMISSION_DENIED');
      expect(error.details).toMatchObject({ httpStatus: 403 });
    }
    expect(await calc.add(2, 2)).toBe(4);
  });

  it('runs module-servers with a read-only file system and no child processes', async () => {
    expect(await failure(calc.tryExec())).toMatchObject({ remoteCode: 'ERR_ACCESS_DENIED' });
    const path = join(tmpdir(), `splice-write-${process.pid}`);
    expect(await failure(calc.tryWrite(path))).toMatchObject({ remoteCode: 'ERR_ACCESS_DENIED' });
    expect(existsSync(path)).toBe(false);
  });

  it('lets module-servers do both when isolation is turned off', async () => {
    await using open = await startPodManager(
      { calc: { package: fixture('calc') } },
      { isolate_modules: false },
    );
    expect(await open.client.module<any>('calc').tryExec()).toBe('ran');
  });

  it('does not pass the pod-manager token to module code', async () => {
    const token = 'a-token-module-code-must-not-see';
    process.env.SPLICE_AUTH_TOKEN = token;
    try {
      await using guarded = await startPodManager({ calc: { package: fixture('calc') } });
      const remote = guarded.client.module<any>('calc');
      expect(await remote.env('HOME')).toBe(process.env.HOME);
      expect(await remote.env('SPLICE_AUTH_TOKEN')).toBeUndefined();
    } finally {
      delete process.env.SPLICE_AUTH_TOKEN;
    }
  });

  it('refuses an oversized payload with 413 RESOURCE_EXHAUSTED before it reaches the module', async () => {
    const error = await failure(calc.echo(new Uint8Array(512 * 1024)));
    expect(error.code).toBe('RESOURCE_EXHAUSTED');
    expect(error.details).toMatchObject({ reason: 'PAYLOAD_TOO_LARGE', httpStatus: 413 });
    expect(await calc.add(1, 1)).toBe(2);
  });

  it('refuses an oversized result with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const error = await failure(calc.bytes(512 * 1024));
    expect(error.code).toBe('RESOURCE_EXHAUSTED');
    expect(await calc.add(1, 1)).toBe(2);
  });

  it('answers a module that is not configured with 404 MODULE_NOT_FOUND', async () => {
    const error = await failure(pm.client.module('nope').anything());
    expect(error).toMatchObject({
      code: 'NOT_FOUND',
      details: { reason: 'MODULE_NOT_FOUND', httpStatus: 404 },
    });
    expect(error.message).toContain("module 'nope' is not configured");
  });

  it("passes npm's own message on when a module cannot be installed", async () => {
    const error = await failure(pm.client.module('missing').x);
    expect(error.details).toMatchObject({ reason: 'INSTALL_FAILED', httpStatus: 502 });
    expect(error.message).toMatch(/npm (error|ERR)/);
    expect(error.message).toContain('splice-orc-missing-package');
    const status = await http(`${pm.url}/modules/missing`);
    expect(status.body).toMatchObject({ state: 'failed', reason: expect.stringContaining('npm') });
  });

  it('reports a module that throws on import as MODULE_START_FAILED with its output', async () => {
    const error = await failure(pm.client.module('broken').x);
    expect(error.details).toMatchObject({ reason: 'MODULE_START_FAILED', httpStatus: 502 });
    expect(error.message).toContain('broken fixture refuses to load');
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED and keeps serving', async () => {
    const impatient = (await import('@splice-orc/client')).connect(pm.url, { timeoutMs: 300 });
    const error = await failure(impatient.module<any>('calc').hang());
    expect(error.code).toBe('DEADLINE_EXCEEDED');
    await impatient.close();
    expect(await calc.add(1, 2)).toBe(3);
  });

  it('cancels a call with an AbortSignal', async () => {
    const controller = new AbortController();
    const pending = pm.client.call(calc.delayed('late', 5_000), { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    expect(await failure(pending)).toMatchObject({ code: 'CANCELLED' });
    const scoped = pm.client.module<any>('calc', { timeoutMs: 200 });
    expect(await failure(scoped.hang())).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(await calc.add(2, 3)).toBe(5);
  });
});
