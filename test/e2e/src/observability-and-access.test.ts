import { connect } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import { fixture, http, standardModules, startPodManager } from './harness.js';

/** The value of one sample line of a Prometheus text exposition. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('metrics', () => {
  it('counts invocations by outcome, latency, cold starts and replicas after known calls', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    for (let i = 0; i < 3; i++) await calc.add(i, 1);
    await calc.fail('x').catch(() => {});
    await calc.add.constructor('x').catch(() => {});
    const { status, body, headers } = await http(`${pm.url}/metrics`);
    expect(status).toBe(200);
    expect(headers.get('content-type')).toContain('text/plain');
    expect(sample(body, 'splice_invocations_total', 'module="calc",outcome="ok",code="OK"')).toBe(3);
    expect(
      sample(body, 'splice_invocations_total', 'module="calc",outcome="remote_error",code="REMOTE_ERROR"'),
    ).toBe(1);
    expect(
      sample(body, 'splice_invocations_total', 'module="calc",outcome="error",code="PERMISSION_DENIED"'),
    ).toBe(1);
    expect(sample(body, 'splice_invocation_duration_seconds_count', 'module="calc"')).toBe(5);
    expect(sample(body, 'splice_cold_start_duration_seconds_count', 'module="calc"')).toBe(1);
    expect(sample(body, 'splice_invocations_in_flight', 'module="calc"')).toBe(0);
    expect(sample(body, 'splice_cold_start_queue_depth', 'module="greeter"')).toBe(0);
    expect(sample(body, 'splice_replicas', 'module="calc",state="ready"')).toBe(1);
  });

  it('counts failed starts by code and placement changes by where the module moved', async () => {
    await using pm = await startPodManager({ ...standardModules, broken: { package: fixture('broken') } });
    await pm.client
      .module<any>('broken')
      .anything()
      .catch(() => {});
    await pm.client
      .module<any>('broken')
      .anything()
      .catch(() => {});
    const local = await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'local' } });
    expect(local.status).toBe(200);
    await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'remote' } });
    const { body } = await http(`${pm.url}/metrics`);
    expect(
      sample(body, 'splice_module_start_failures_total', 'module="broken",code="MODULE_START_FAILED"'),
    ).toBe(2);
    expect(
      sample(body, 'splice_invocations_total', 'module="broken",outcome="error",code="MODULE_START_FAILED"'),
    ).toBe(2);
    expect(sample(body, 'splice_placement_changes_total', 'module="calc",placement="local"')).toBe(1);
    expect(sample(body, 'splice_placement_changes_total', 'module="calc",placement="remote"')).toBe(1);
  });
});

describe('access', () => {
  const token = 'a-test-token-of-enough-length';

  it('answers 401 to a missing or wrong token, and starts nothing', async () => {
    await using pm = await startPodManager(undefined, { auth_token: token });
    const missing = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: { path: 'add', args: [1, 2] },
    });
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('UNAUTHENTICATED');
    const wrong = await http(`${pm.url}/modules`, {
      headers: { authorization: 'Bearer not-the-token-at-all' },
    });
    expect(wrong.status).toBe(401);
    expect((await http(`${pm.url}/metrics`)).status).toBe(401);
    await expect(pm.client.module<any>('calc').add(1, 2)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    const view = await http(`${pm.url}/modules/calc`, { headers: { authorization: `Bearer ${token}` } });
    expect(view.body.state).toBe('absent');
  });

  it('serves health without a token and everything with it', async () => {
    await using pm = await startPodManager(undefined, { auth_token: token });
    expect((await http(`${pm.url}/healthz`)).status).toBe(200);
    expect((await http(`${pm.url}/readyz`)).status).toBe(200);
    const client = connect(pm.url, { token });
    expect(await client.module<any>('calc').add(1, 2)).toBe(3);
    await client.close();
  });
});

describe('control rate limit', () => {
  it('refuses control requests past server.control_rate_limit_per_minute with 429, and nothing else', async () => {
    await using pm = await startPodManager(undefined, { control_rate_limit_per_minute: 3 });
    const policy = { name: 'default' };
    // One budget for every control route: a policy change, a load and an unload use it up.
    expect((await http(`${pm.url}/policy`, { method: 'PUT', body: policy })).status).toBe(200);
    expect((await http(`${pm.url}/modules/calc/load`, { method: 'POST' })).status).toBe(200);
    expect((await http(`${pm.url}/modules/calc/unload`, { method: 'POST' })).status).toBe(200);
    const refused = await http(`${pm.url}/modules/calc/load`, { method: 'POST' });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'RATE_LIMITED', status: 'RESOURCE_EXHAUSTED' });
    expect(refused.body.error.message).toMatch(/made 3 control requests .* within a minute: retry in \d+ s/);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused.body.error.retry_after_s).toBe(Number(refused.headers.get('retry-after')));
    // Nothing was started by the refused load.
    expect((await http(`${pm.url}/modules/calc`)).body.state).not.toBe('starting');
    const job = await http(`${pm.url}/jobs`, {
      method: 'POST',
      body: { module: 'calc', fn: 'add', inputs: [[1, 2]] },
    });
    expect(job.status).toBe(429);
    expect(job.body.error.code).toBe('RATE_LIMITED');
    expect((await http(`${pm.url}/jobs`)).body.jobs).toEqual([]);
    // A request the schema refuses is a 400 as before (it is checked first), also on the routes
    // that check their body in the handler.
    expect((await http(`${pm.url}/policy`, { method: 'PUT', body: { name: 7 } })).status).toBe(400);
    const badLoad = await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'nowhere' } });
    expect(badLoad.body.error.code).toBe('BAD_REQUEST');
    const badJob = await http(`${pm.url}/jobs`, { method: 'POST', body: { module: 'calc' } });
    expect(badJob.body.error.code).toBe('JOB_SPEC_INVALID');
    // Reads and calls to modules are not counted.
    expect((await http(`${pm.url}/modules`)).status).toBe(200);
    expect(await pm.client.module<any>('calc').add(1, 2)).toBe(3);
  });
});

describe('benchmark, tracking and usage', () => {
  it('reports throughput and latency percentiles per module and overall between start and stop', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    const greeter = pm.client.module<any>('greeter');
    await calc.add(0, 0);
    await greeter('warm');
    const started = await http(`${pm.url}/benchmark/start`, { method: 'POST' });
    expect(started.body).toMatchObject({ active: true, overall: { calls: 0 } });
    for (let i = 0; i < 20; i++) await calc.add(i, 1);
    for (let i = 0; i < 10; i++) await greeter('x');
    await calc.delayed(1, 50);
    const stopped = (await http(`${pm.url}/benchmark/stop`, { method: 'POST' })).body;
    await calc.add(1, 1); // after stop: not counted
    const report = (await http(`${pm.url}/benchmark/report`)).body;
    expect(report).toEqual(stopped);
    expect(report.active).toBe(false);
    expect(report.modules.calc.calls).toBe(21);
    expect(report.modules.greeter.calls).toBe(10);
    expect(report.overall.calls).toBe(31);
    expect(report.overall.throughput).toBeGreaterThan(0);
    const calc_ = report.modules.calc;
    expect(calc_.p50_ms).toBeLessThanOrEqual(calc_.p90_ms);
    expect(calc_.p90_ms).toBeLessThanOrEqual(calc_.p95_ms);
    expect(calc_.p95_ms).toBeLessThanOrEqual(calc_.p99_ms);
    expect(calc_.p99_ms).toBeGreaterThanOrEqual(50);
    expect(calc_.mean_ms).toBeGreaterThan(0);
  });

  it('tracks placement and policy changes over time and the mean call time per module', async () => {
    await using pm = await startPodManager();
    await http(`${pm.url}/tracking/start`, { method: 'POST' });
    await pm.client.module<any>('calc').add(1, 1);
    await http(`${pm.url}/modules/greeter/load`, { method: 'POST', body: { mode: 'local' } });
    await http(`${pm.url}/policy`, { method: 'PUT', body: { name: 'adaptive' } });
    const report = (await http(`${pm.url}/tracking`)).body;
    expect(report.active).toBe(true);
    expect(report.modules.calc.calls).toBe(1);
    expect(report.modules.calc.mean_ms).toBeGreaterThan(0);
    expect(report.events).toEqual([
      expect.objectContaining({
        kind: 'placement',
        module: 'greeter',
        from: 'remote',
        to: 'local',
        reason: 'load_type local',
      }),
      expect.objectContaining({
        kind: 'placement',
        policy: 'adaptive',
        reason: 'policy default -> adaptive',
      }),
    ]);
    await http(`${pm.url}/tracking/stop`, { method: 'POST' });
    await http(`${pm.url}/modules/greeter/load`, { method: 'POST', body: { mode: 'remote' } });
    expect((await http(`${pm.url}/tracking`)).body.events).toHaveLength(2);
  });

  it('shows the CPU and memory of each module server', async () => {
    await using pm = await startPodManager();
    await pm.client.module<any>('calc').add(1, 1);
    const usage = (await http(`${pm.url}/usage`)).body;
    expect(usage.modules.greeter).toEqual([]);
    expect(usage.modules.calc).toHaveLength(1);
    expect(usage.modules.calc[0]).toMatchObject({
      cpu_percent: expect.any(Number),
      memory_bytes: expect.any(Number),
    });
    expect(usage.modules.calc[0].memory_bytes).toBeGreaterThan(10 * 1024 * 1024);
    expect((await http(`${pm.url}/modules/calc`)).body.usage[0].memory_bytes).toBeGreaterThan(0);
  });
});
