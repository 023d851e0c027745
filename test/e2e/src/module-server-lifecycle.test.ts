import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  fixture,
  http,
  isAlive,
  moduleServerChildren,
  repoRoot,
  standardModules,
  startPodManager,
  writeConfig,
} from './harness.js';

/** Starts `splice-orc serve` as its own process, as a user would, and waits for its URL. */
async function startCli(configPath: string) {
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath, '--port', '0'],
    {
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`splice-orc serve exited with ${code}`)));
  });
  return { child, url };
}

describe('splice-orc serve', () => {
  it('refuses a bad config with every problem and its JSON path, and exit code 2', async () => {
    const configPath = writeConfig({ calc: { load_type: 'sideways', colour: 'red' } }, { port: 'eighty' });
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toContain(`invalid config ${configPath}:`);
    expect(stderr).toContain('/module_config/calc/load_type: must be one of remote, local, auto');
    expect(stderr).toContain("/module_config/calc: unknown key 'colour'");
    expect(stderr).toContain('/server/port: must be integer');
  });
});

describe('splice-orc serve without a token', () => {
  it('listens on loopback only, even when asked for every address, and says so', async () => {
    const configPath = writeConfig(standardModules, { host: '0.0.0.0' });
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath, '--port', '0'],
      {
        env: { ...process.env, SPLICE_AUTH_TOKEN: '', LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    let out = '';
    const url = await new Promise<string>((resolve) => {
      child.stdout.on('data', (chunk) => {
        out += chunk;
        const match = /listening on (http:\/\/\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
    });
    child.kill('SIGTERM');
    await once(child, 'exit');
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(out).toContain('listening on 127.0.0.1 only');
  });
});

describe('module-server lifecycle', () => {
  it('restarts a killed module-server and serves the next call', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    const firstPid = await calc.pid();
    process.kill(firstPid, 'SIGKILL');
    // A call that races the death may meet the dying connection and get a clean 503 (it may have
    // run, so it is not retried); once the pod-manager has seen the exit, calls wait for the restart.
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.pid !== firstPid,
      5_000,
      'the exit to be seen',
    );
    const nextPid = await calc.pid();

    expect(nextPid).not.toBe(firstPid);
    expect(isAlive(firstPid)).toBe(false);
    const status = await http(`${pm.url}/modules/calc`);
    expect(status.body).toMatchObject({ state: 'ready', pid: nextPid, restarts: 1 });
  });

  it('answers a call that races a server death cleanly, and serves the call after it', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    const firstPid = await calc.pid();
    process.kill(firstPid, 'SIGKILL');
    const racing = await calc.pid().then(
      (pid: number) => ({ pid }),
      (error: { code: string; message: string }) => ({ code: error.code, message: error.message }),
    );
    if ('code' in racing) {
      expect(racing.code).toBe('UNAVAILABLE');
      expect(racing.message).toMatch(/went away during the call/);
    } else {
      expect(racing.pid).not.toBe(firstPid);
    }
    expect(await calc.pid()).not.toBe(firstPid);
  });

  it('restarts a module-server whose event loop is stuck in module code', async () => {
    await using pm = await startPodManager(undefined, { liveness_interval_ms: 200, liveness_failures: 2 });
    const calc = pm.client.module<any>('calc');
    const stuckPid = await calc.pid();
    const stuck = await pm.client
      .call(calc.spin(60_000), { timeoutMs: 1_000 })
      .catch((e: { code: string }) => e.code);
    expect(['DEADLINE_EXCEEDED', 'UNAVAILABLE']).toContain(stuck);
    await eventually(async () => !isAlive(stuckPid), 10_000, 'the stuck server to be killed');
    expect(await calc.pid()).not.toBe(stuckPid);
    expect((await http(`${pm.url}/modules/calc`)).body).toMatchObject({ state: 'ready', restarts: 1 });
  });

  it('is not wedged when it is unloaded while a call waits for its restart', async () => {
    await using pm = await startPodManager(undefined, { queue_timeout_ms: 3_000 });
    const calc = pm.client.module<any>('calc');
    const pid = await calc.pid();
    process.kill(pid, 'SIGKILL');
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.state === 'starting',
      5_000,
      'the restart',
    );
    const waiting = calc.add(1, 1).then(
      (v: number) => v,
      (e: { details?: { reason?: string } }) => e.details?.reason,
    );
    await http(`${pm.url}/modules/calc`, { method: 'DELETE' });
    expect([2, 'MODULE_STOPPED']).toContain(await waiting);
    expect(await calc.add(2, 2)).toBe(4);
  });

  it('starts and stops a module explicitly', async () => {
    await using pm = await startPodManager();
    const loaded = await http(`${pm.url}/modules/greeter/load`, { method: 'POST' });
    expect(loaded.status).toBe(200);
    expect(loaded.body).toMatchObject({
      name: 'greeter',
      state: 'ready',
      endpoint: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    const pid = loaded.body.pid as number;
    expect(isAlive(pid)).toBe(true);
    const stopped = await http(`${pm.url}/modules/greeter`, { method: 'DELETE' });
    expect(stopped.body).toMatchObject({ state: 'absent' });
    expect(isAlive(pid)).toBe(false);
    expect(await pm.client.module<any>('greeter')('again')).toBe('hello, again');
  });

  it('leaves no module-server behind when the pod-manager closes', async () => {
    const pm = await startPodManager();
    const pids = [
      await pm.client.module<any>('calc').pid(),
      await pm.client
        .module<any>('greeter')
        .shout('x')
        .then(() => 0),
    ];
    expect(moduleServerChildren(process.pid)).toHaveLength(2);
    await pm[Symbol.asyncDispose]();
    expect(moduleServerChildren(process.pid)).toEqual([]);
    expect(isAlive(pids[0]!)).toBe(false);
  });

  it('leaves no child process when `splice-orc serve` gets SIGTERM', async () => {
    const { child, url } = await startCli(writeConfig(standardModules));
    const client = connect(url);
    await client.module<any>('calc').add(1, 1);
    await client.module<any>('greeter')('x');
    const children = moduleServerChildren(child.pid!);
    expect(children).toHaveLength(2);
    await client.close();
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    for (const pid of children) expect(isAlive(pid)).toBe(false);
  });

  it('leaves no orphan even when the pod-manager is killed with SIGKILL', async () => {
    const { child, url } = await startCli(writeConfig(standardModules));
    const client = connect(url);
    const pid = await client.module<any>('calc').pid();
    await client.close();
    child.kill('SIGKILL');
    await once(child, 'exit');
    await eventually(() => !isAlive(pid), 5_000, 'the orphaned module-server to exit');
  });

  it('leaves no orphan when the pod-manager dies while the module is still loading', async () => {
    const { child, url } = await startCli(writeConfig({ 'slow-start': { package: fixture('slow-start') } }));
    // The fixture's import takes 2 s: the pod-manager dies while the server waits for it.
    http(`${url}/modules/slow-start/load`, { method: 'POST', timeoutMs: 60_000 }).catch(() => {});
    const pids = await eventually(
      () => {
        const found = moduleServerChildren(child.pid!);
        return found.length > 0 ? found : undefined;
      },
      60_000,
      'the module-server to start',
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    child.kill('SIGKILL');
    await once(child, 'exit');
    await eventually(() => pids?.every((pid) => !isAlive(pid)), 5_000, 'the orphaned module-server to exit');
  });
});
