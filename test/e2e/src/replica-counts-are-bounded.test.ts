/**
 * Regression (found by schemathesis): a module config with min_replicas 1000, accepted over REST,
 * made the lifecycle loop start a thousand module-servers at once and brought the machine down.
 * Replica counts are bounded by the schema, the local backend by server.max_module_servers, and
 * scale-ups come in waves.
 */
import { describe, expect, it } from 'vitest';
import { eventually, fixture, http, moduleServerChildren, startPodManager } from './harness.js';

describe('replica counts', () => {
  it('refuses min_replicas and max_replicas past 256 in a REST config', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc') } });
    const answer = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: { package: fixture('calc'), min_replicas: 1000, max_replicas: 1000 },
    });
    expect(answer.status).toBe(400);
    expect(answer.body.error.problems).toEqual(
      expect.arrayContaining(['/module_config/calc/min_replicas: must be <= 256']),
    );
  });

  it('never runs more module-servers than max_module_servers, whatever the configs ask', async () => {
    await using pm = await startPodManager(
      { calc: { package: fixture('calc') }, greeter: { package: fixture('greeter') } },
      { max_module_servers: 3, lifecycle_interval_ms: 50 },
    );
    const put = await http(`${pm.url}/modules/calc/config`, {
      method: 'PUT',
      body: { package: fixture('calc'), min_replicas: 200, max_replicas: 200 },
    });
    expect(put.status).toBe(200);
    let most = 0;
    await eventually(
      async () => {
        most = Math.max(most, moduleServerChildren(process.pid).length);
        return (
          (await http(`${pm.url}/modules/calc`)).body.replicas.filter(
            (r: { state: string }) => r.state === 'ready',
          ).length === 3
        );
      },
      20_000,
      'three ready replicas',
    );
    for (let i = 0; i < 20; i++) {
      most = Math.max(most, moduleServerChildren(process.pid).length);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(most).toBe(3);
    // Another module cannot start now: a clear refusal, not a fourth process.
    const greeter = await http(`${pm.url}/modules/greeter/load`, { method: 'POST', body: {} });
    expect(greeter.status).toBe(503);
    expect(greeter.body.error).toMatchObject({ code: 'SERVER_LIMIT', safe_to_resend: true });
  });
});
