import { inspect } from 'node:util';
import { connect } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import { eventually, fixture, http, repoRoot, startPodManager } from './harness.js';

/** How a client imports modules placed local: the fixtures stand in for the app's dependencies. */
const importModule = (name: string) => import(`${repoRoot}test/fixtures/${name}/index.js`);

describe('placement', () => {
  it('runs a module with load_type local in the client process, and starts no server for it', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), load_type: 'local' } });
    const client = connect(pm.url, { importModule });
    const calc = client.module<any>('calc');
    expect(await calc.pid()).toBe(process.pid);
    const m = await calc.matrix([
      [1, 2],
      [3, 4],
    ]);
    expect(inspect(m)).toMatch(/@local-/);
    expect(await calc.det(m)).toBe(-2);
    await expect(calc.fail('here')).rejects.toMatchObject({ name: 'RemoteError', remoteName: 'RangeError' });
    await expect(calc.add.constructor('x')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    const view = (await http(`${pm.url}/modules/calc`)).body;
    expect(view).toMatchObject({ mode: 'local', placement: 'local', state: 'absent' });
    await client.close();
  });

  it('runs a call that passes functions on a module-server even for a module placed local', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), load_type: 'local' } });
    const client = connect(pm.url, { importModule });
    const calc = client.module<any>('calc');
    expect(await calc.pid()).toBe(process.pid);
    // Callbacks need a module-server: this call goes there, the others stay here.
    expect(await calc.mapWith([1, 2], (x: number) => x + 1)).toEqual([2, 3]);
    expect(await calc.pid()).toBe(process.pid);
    // A local reference cannot take one: refused, naming why.
    const em = await calc.emitter();
    await expect(em.on('data', () => {})).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: expect.stringMatching(/held in this process \(placed local\)/),
    });
    await client.close();
  });

  it('runs a local module remotely, warning once, when this client cannot import it', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), load_type: 'local' } });
    let imports = 0;
    const client = connect(pm.url, {
      importModule: async () => {
        imports++;
        throw new Error('not installed here');
      },
    });
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => {
      if (w.code === 'SPLICE_LOCAL_UNAVAILABLE') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const calc = client.module<any>('calc');
      for (let i = 0; i < 3; i++) expect(await calc.pid()).not.toBe(process.pid);
      await new Promise((r) => setImmediate(r));
      expect(imports).toBe(1);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/cannot be imported in this process \(not installed here\)/);
    } finally {
      process.off('warning', onWarning);
      await client.close();
    }
  });

  it('switches placement at runtime; references already held keep working where they live', async () => {
    await using pm = await startPodManager();
    const client = connect(pm.url, { importModule, reportIntervalMs: 100 });
    const calc = client.module<any>('calc');
    const remotePid = await calc.pid();
    expect(remotePid).not.toBe(process.pid);
    const held = await calc.matrix([[7]]);

    const switched = await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'local' } });
    expect(switched.body).toMatchObject({ mode: 'local', placement: 'local' });
    // The next answer tells the client; the call after it runs here.
    await calc.add(1, 1);
    expect(await calc.pid()).toBe(process.pid);
    expect(await held.get(0, 0)).toBe(7);
    expect(inspect(held)).not.toMatch(/@local-/);

    // Calls placed local do not meet the pod-manager: the client learns from its statistics reports.
    await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'remote' } });
    await eventually(async () => (await calc.pid()) !== process.pid, 5_000, 'the switch back');
    await client.release(held);
    await client.close();
  });

  it('adaptive policy: places an auto module local from reported latencies, with its reason', async () => {
    await using pm = await startPodManager({
      calc: { package: fixture('calc'), load_type: 'auto', lib_mem_size_req: '50Mi' },
    });
    const policy = await http(`${pm.url}/policy`, {
      method: 'PUT',
      body: { name: 'adaptive', interval_s: 0.2, min_gain_ms: 0.5 },
    });
    expect(policy.body).toMatchObject({ name: 'adaptive', placements: { calc: 'remote' } });
    // Stated inputs: remote calls take 3 ms on average, nothing measured locally yet.
    const report = {
      memory_budget: 256 * 1024 * 1024,
      modules: { calc: { remote: { calls: 10, total_ms: 30 } } },
    };
    expect((await http(`${pm.url}/stats`, { method: 'POST', body: report })).status).toBe(200);
    const view = await eventually(
      async () => {
        const body = (await http(`${pm.url}/modules/calc`)).body;
        return body.placement === 'local' ? body : undefined;
      },
      5_000,
      'the adaptive decision',
    );
    expect(view.placement_reason).toMatch(/^adaptive: saves 3\.00 ms\/call/);
    // A client follows it.
    const client = connect(pm.url, { importModule });
    expect(await client.module<any>('calc').pid()).toBe(process.pid);
    await client.close();
  });

  it('reports client call statistics to the pod-manager', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), load_type: 'auto' } });
    await http(`${pm.url}/policy`, {
      method: 'PUT',
      body: { name: 'adaptive', interval_s: 0.2, min_gain_ms: 0 },
    });
    const client = connect(pm.url, { importModule, reportIntervalMs: 100, memoryBudget: '1Gi' });
    const calc = client.module<any>('calc');
    for (let i = 0; i < 5; i++) await calc.add(i, i);
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.placement === 'local',
      5_000,
      'the decision from reports',
    );
    await eventually(async () => (await calc.pid()) === process.pid, 5_000, 'the client to follow');
    await client.close();
  });

  it('keeps settings changed at runtime across a restart of the pod-manager', async () => {
    const first = await startPodManager();
    const configPath = first.configPath;
    await http(`${first.url}/modules/calc/load`, { method: 'POST', body: { mode: 'local' } });
    await http(`${first.url}/policy`, { method: 'PUT', body: { name: 'adaptive' } });
    const put = await http(`${first.url}/modules/greeter/config`, {
      method: 'PUT',
      body: { package: fixture('greeter'), max_replicas: 2 },
    });
    expect(put.status).toBe(200);
    await first[Symbol.asyncDispose]();
    await using second = await startPodManager(undefined, {}, configPath);
    expect((await http(`${second.url}/modules/calc`)).body).toMatchObject({ mode: 'local' });
    expect((await http(`${second.url}/policy`)).body).toMatchObject({ name: 'adaptive' });
    expect((await http(`${second.url}/modules/greeter/config`)).body).toMatchObject({ max_replicas: 2 });
  });

  it('changes nothing when a runtime config names a package that cannot be installed', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    const pid = await calc.pid();
    const put = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: { package: fixture('splice-orc-nothing-here') },
    });
    expect(put.status).toBe(502);
    expect(put.body.error.code).toBe('INSTALL_FAILED');
    expect((await http(`${pm.url}/modules/calc/config`)).body.package).toMatch(/fixtures\/calc$/);
    expect(await calc.pid()).toBe(pid);
  });

  it('validates a runtime module config like the file, listing every problem', async () => {
    await using pm = await startPodManager();
    const bad = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: { load_type: 'nowhere', max_replicas: 0, extra: 1 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.problems).toEqual(
      expect.arrayContaining([
        '/module_config/calc/load_type: must be one of remote, local, auto',
        '/module_config/calc/max_replicas: must be >= 1',
        "/module_config/calc: unknown key 'extra'",
      ]),
    );
  });
});
