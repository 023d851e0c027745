import { connect } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import { http, startPodManager } from './harness.js';

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
    expect(sample(body, 'splice_invocations_total', 'module="calc",outcome="ok"')).toBe(3);
    expect(sample(body, 'splice_invocations_total', 'module="calc",outcome="remote_error"')).toBe(1);
    expect(sample(body, 'splice_invocations_total', 'module="calc",outcome="error"')).toBe(1);
    expect(sample(body, 'splice_invocation_duration_seconds_count', 'module="calc"')).toBe(5);
    expect(sample(body, 'splice_cold_start_duration_seconds_count', 'module="calc"')).toBe(1);
    expect(sample(body, 'splice_invocations_in_flight', 'module="calc"')).toBe(0);
    expect(sample(body, 'splice_cold_start_queue_depth', 'module="greeter"')).toBe(0);
    expect(sample(body, 'splice_replicas', 'module="calc",state="ready"')).toBe(1);
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
