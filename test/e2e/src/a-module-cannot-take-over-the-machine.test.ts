/**
 * The chain an outside attack ran end to end in a second (issue: a module can take over the
 * machine), link by link: a module that runs arbitrary code reads the pod-manager's environment
 * through /proc, finds the token, changes another module's package to a tarball it serves and has
 * npm run its postinstall. Each link is closed on its own.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as inspector from 'node:inspector';
import { join } from 'node:path';
import { createModuleClient, encode } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheDir, fixture, http, repoRoot, startPodManager, type TestPodManager } from './harness.js';

const token = 'a-token-of-the-pod-manager-0123';
let pm: TestPodManager;
let hostile: any;

beforeAll(async () => {
  process.env.SPLICE_AUTH_TOKEN = token;
  process.env.SPLICE_TEST_SENTINEL = 'the pod-manager environment';
  pm = await startPodManager({
    hostile: { package: fixture('hostile') },
    calc: { package: fixture('calc') },
  });
  hostile = pm.client.module('hostile');
  await pm.client.module<any>('calc').add(1, 1);
});
afterAll(async () => {
  delete process.env.SPLICE_AUTH_TOKEN;
  delete process.env.SPLICE_TEST_SENTINEL;
  await pm[Symbol.asyncDispose]();
});

const auth = { authorization: `Bearer ${token}` };
/** The Landlock launcher the pod-manager starts isolated Node servers through. */
const launcher = join(repoRoot, 'packages/python-module-server/src/splice_module_server/isolation.py');

describe('a module that runs arbitrary code', () => {
  it("cannot read the pod-manager's environment, config, state or another module's install", async () => {
    const ppid = await hostile.parentPid();
    expect(ppid).toBe(process.pid);
    const modules = (await http(`${pm.url}/modules`, { headers: auth })).body.modules;
    const calcPid = modules.find((m: { name: string }) => m.name === 'calc').pid;
    for (const path of [
      `/proc/${ppid}/environ`,
      `/proc/${calcPid}/environ`,
      '/proc/self/environ',
      pm.configPath,
      join(pm.configPath, '../state.json'),
      '/etc/passwd',
    ]) {
      expect(await hostile.read(path), path).toEqual({ error: 'ERR_ACCESS_DENIED' });
    }
    expect(await hostile.list(join(cacheDir, 'modules'))).toEqual({ error: 'ERR_ACCESS_DENIED' });
    // Not even the folder it was installed from: only the copy in its install folder.
    expect(await hostile.read(join(repoRoot, 'test/fixtures/hostile/index.js'))).toEqual({
      error: 'ERR_ACCESS_DENIED',
    });
  });

  it('cannot leave the permission model through a worker thread started without its flags', async () => {
    // The server needs --allow-worker for its callback relay; module code must not get a Worker.
    const outcomes = await hostile.escapeByWorker('/etc/passwd');
    for (const way of ['import', 'require', 'getBuiltinModule']) {
      expect(outcomes[way], way).toEqual({
        error: 'module code may not start worker threads in an isolated module-server',
      });
    }
    expect(outcomes.processBinding).toEqual({ error: 'ERR_ACCESS_DENIED' });
  });

  it("cannot reach the Worker class through Node's loader-hooks thread", async () => {
    // module.register starts a worker of Node's own and announces it: refused before it starts.
    expect(await hostile.escapeByLoaderHooks('/etc/passwd')).toEqual({
      error: 'module code may not register module loader hooks in an isolated module-server',
    });
  });

  it('is handed no port of the server when it replaces MessagePort.prototype.postMessage', async () => {
    // A callback's call makes the server post to its relay; the worker's own port led to the Worker.
    expect(await hostile.escapeByRelayPort((x: number) => x)).toEqual({ caught: 'nothing' });
  });

  it('is held by the kernel as well: no new privileges, and no signal to the pod-manager', async () => {
    const abi = Number(execFileSync('python3', ['-I', '-S', launcher, '--abi'], { encoding: 'utf8' }).trim());
    const { pid, outcome } = await hostile.signalParent('SIGUSR1');
    // Set by the Landlock launcher before it executed Node; Node never sets it itself.
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^NoNewPrivs:\s+1$/m);
    // Landlock ABI 6 (Linux 6.12) scopes signals to the domain; before it, the pod-manager ignores
    // SIGUSR1 itself. Either way its inspector stays closed.
    expect(outcome).toBe(abi >= 6 ? 'EPERM' : 'sent');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(inspector.url()).toBeUndefined();
  });

  it('leaves SIGUSR1 unable to open the pod-manager’s inspector, whoever sends it', async () => {
    // What a module-server could do where the kernel does not scope signals.
    process.kill(process.pid, 'SIGUSR1');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(inspector.url()).toBeUndefined();
  });

  it('reads its own installed files (the refusals are the permission model, not a broken read)', async () => {
    expect(await hostile.ownSource()).toEqual({ text: expect.stringContaining('export function ownSource') });
  });

  it('sees no variable of the pod-manager but the allow-listed ones', async () => {
    const keys: string[] = await hostile.envKeys();
    expect(keys).not.toContain('SPLICE_AUTH_TOKEN');
    expect(keys).not.toContain('SPLICE_TEST_SENTINEL');
    expect(keys).not.toContain('SPLICE_SERVER_SECRET');
    expect(keys).toContain('PATH');
  });

  it('cannot compile code from strings (a template engine fails with EvalError)', async () => {
    await expect(hostile.template('return 1')).rejects.toMatchObject({
      remoteName: 'EvalError',
      message: expect.stringMatching(/Code generation from strings disallowed/),
    });
  });

  it("cannot change a module's package to a URL, even with the token", async () => {
    const put = (body: unknown, token?: string) =>
      hostile.request(`${pm.url}/modules/calc/config`, 'PUT', body, token);
    expect((await put({ package: 'http://127.0.0.1:9/x.tgz' })).status).toBe(401);
    const stolen = await put({ package: 'http://127.0.0.1:9/x.tgz' }, token);
    expect(stolen.status).toBe(403);
    expect(JSON.parse(stolen.body).error).toMatchObject({ code: 'PACKAGE_NOT_ALLOWED' });
  });

  it("cannot call another module's server directly: its gRPC port wants the server's secret", async () => {
    const calcView = (await http(`${pm.url}/modules/calc`, { headers: auth })).body;
    const direct = createModuleClient(calcView.endpoint);
    const program = encode({
      v: 1,
      session: 'x',
      ops: [{ op: 'call', target: null, path: ['add'], args: [1, 2] }],
    });
    await expect(direct.invoke(program, { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    expect(await direct.health({ timeoutMs: 2_000 })).toBe('SERVING');
    direct.close();
    const viaModule = await hostile.request(`${pm.url}/modules/calc/invoke`, 'POST', {
      path: 'add',
      args: [1, 2],
    });
    expect(viaModule.status).toBe(401);
  });
});
