/**
 * The container image's entry point (docker/Dockerfile runs `node dist/entrypoint.js`), tested
 * without Docker: the same file, the same environment variables, real processes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModuleClient, decode, encode } from '@splice-orc/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { fixture, http, repoRoot, writeConfig } from './harness.js';

const secret = 'a-module-server-secret-for-tests';
const program = (fn: string, args: unknown[]) =>
  encode({ v: 1, session: 's', ops: [{ op: 'call', target: null, path: [fn], args }] });

const entrypoint = join(repoRoot, 'packages/pod-manager/dist/entrypoint.js');
const running: ChildProcess[] = [];
afterEach(async () => {
  // SIGTERM, which the entry point passes on to the server it runs again with Node's flags: a
  // SIGKILL would leave that server running on its own. SIGKILL only if it does not end.
  await Promise.all(
    running.splice(0).map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const ended = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await ended;
      clearTimeout(timer);
    }),
  );
});

/** Runs the entry point with `env`; resolves when it exits, or when its output matches `until`. */
function run(env: Record<string, string>, until?: RegExp): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [entrypoint], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  let out = '';
  return new Promise((resolve) => {
    const collect = (chunk: Buffer) => {
      out += chunk.toString();
      if (until?.test(out)) resolve({ code: null, out });
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('container entry point (SERVICE_TYPE)', () => {
  it.each([
    [{}, /SERVICE_TYPE must be one of pod_manager, module_service, module_install; got nothing/],
    [{ SERVICE_TYPE: 'web' }, /SERVICE_TYPE must be one of .*; got 'web'/],
    [{ SERVICE_TYPE: 'module_service' }, /SERVICE_TYPE=module_service needs MODULE_NAME/],
    [{ SERVICE_TYPE: 'pod_manager', PORT: 'eighty' }, /PORT must be a port number \(0-65535\); got 'eighty'/],
    [{ SERVICE_TYPE: 'module_install', MODULE_NAME: 'x' }, /needs MODULE_NAME and MODULE_RESOLVE_FROM/],
  ])('refuses %j with exit status 2 and a message naming the problem', async (env, message) => {
    const { code, out } = await run(env);
    expect(code).toBe(2);
    expect(out).toMatch(message);
  });

  it('installs a module (the init container), then serves it (module_service)', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'splice-entry-')), 'install');
    const install = await run({
      SERVICE_TYPE: 'module_install',
      MODULE_NAME: 'hostile',
      MODULE_PACKAGE: fixture('hostile'),
      MODULE_DEPENDENCIES: '[]',
      MODULE_RESOLVE_FROM: dir,
    });
    expect(install.code, install.out).toBe(0);
    expect(existsSync(join(dir, 'node_modules/hostile/package.json'))).toBe(true);
    const served = await run(
      {
        SERVICE_TYPE: 'module_service',
        MODULE_NAME: 'hostile',
        MODULE_RESOLVE_FROM: dir,
        PORT: '0',
        SPLICE_SERVER_ID: 'pod-1',
        SPLICE_SERVER_SECRET: secret,
      },
      /"msg":"listening"/,
    );
    expect(served.out).toMatch(/"serverId":"pod-1"/);
    const port = Number(/"port":(\d+)/.exec(served.out)?.[1]);
    // It serves callers with its secret; its module cannot compile strings (run again with the flag).
    const client = createModuleClient(`127.0.0.1:${port}`, { secret });
    expect(decode(await client.invoke(program('envKeys', []), { timeoutMs: 5_000 }))).toMatchObject({
      ok: true,
      value: expect.not.arrayContaining(['SPLICE_SERVER_SECRET']),
    });
    expect(
      decode(await client.invoke(program('template', ['return 1']), { timeoutMs: 5_000 })),
    ).toMatchObject({
      ok: false,
      error: { name: 'EvalError' },
    });
    client.close();
  });

  it('refuses to serve a module without a secret', async () => {
    const { code, out } = await run({ SERVICE_TYPE: 'module_service', MODULE_NAME: 'calc', PORT: '0' });
    expect(code).not.toBe(0);
    expect(out).toMatch(/SPLICE_SERVER_SECRET is not set/);
  });

  it('reports a failed install with npm’s reason and exit status 2', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'splice-entry-')), 'install');
    const { code, out } = await run({
      SERVICE_TYPE: 'module_install',
      MODULE_NAME: 'missing',
      MODULE_PACKAGE: 'file:/nonexistent/splice-module',
      MODULE_RESOLVE_FROM: dir,
    });
    expect(code).toBe(2);
    expect(out).toMatch(/npm install file:\/nonexistent\/splice-module failed/);
  });

  it('starts the pod-manager (pod_manager) from SPLICE_CONFIG', async () => {
    const config = writeConfig({ calc: { package: fixture('calc') } });
    const { out } = await run(
      { SERVICE_TYPE: 'pod_manager', SPLICE_CONFIG: config, HOST: '127.0.0.1', PORT: '0' },
      /listening on (http:\/\/127\.0\.0\.1:\d+)/,
    );
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    expect((await http(`${url}/healthz`)).status).toBe(200);
  });

  it('is what the Dockerfile starts, as a non-root user', () => {
    const dockerfile = readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/entrypoint\.js"\]$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    // The deployed folder follows the workspace's lockfile (see the Dockerfile).
    expect(dockerfile).toMatch(/--config\.inject-workspace-packages=true .*deploy --prod \/out/);
  });
});
