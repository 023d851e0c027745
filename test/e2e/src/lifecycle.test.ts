import { inspect } from 'node:util';
import { connect } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import { eventually, fixture, http, isAlive, startPodManager } from './harness.js';

/** Short durations so that time-based behaviour is tested in seconds, not minutes. */
const fast = { lifecycle_interval_ms: 50, scale_window_s: 0.3, scale_down_delay_s: 0.5, lease_ms: 400 };

describe('lifecycle', () => {
  it('stops a module that has been idle with no live reference, and starts it again on the next call', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), idle_timeout_s: 0.5 } }, fast);
    const calc = pm.client.module<any>('calc');
    const pid = await calc.pid();
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.state === 'absent',
      5_000,
      'the idle stop',
    );
    expect(isAlive(pid)).toBe(false);
    expect(await calc.pid()).not.toBe(pid);
  });

  it('keeps an idle module up while a reference to it is live', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), idle_timeout_s: 0.3 } }, fast);
    const calc = pm.client.module<any>('calc');
    const m = await calc.matrix([[1]]);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await http(`${pm.url}/modules/calc`)).body.state).toBe('ready');
    expect(await m.get(0, 0)).toBe(1);
    await pm.client.release(m);
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.state === 'absent',
      5_000,
      'the idle stop',
    );
  });

  it('scales up under concurrent load and back down after the delay', async () => {
    await using pm = await startPodManager(
      { calc: { package: fixture('calc'), max_replicas: 3, target_concurrency: 2 } },
      fast,
    );
    const calc = pm.client.module<any>('calc');
    await calc.pid();
    // Six slow calls at a time for a while: 6 in flight / 2 per replica = 3 replicas.
    const until = Date.now() + 2_500;
    const pids = new Set<number>();
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (Date.now() < until) {
          await calc.delayed(0, 50);
          pids.add(await calc.pid());
        }
      }),
    );
    const scaled = (await http(`${pm.url}/modules/calc`)).body;
    expect(scaled.replicas.filter((r: { state: string }) => r.state === 'ready')).toHaveLength(3);
    expect(pids.size).toBe(3);
    await eventually(
      async () => (await http(`${pm.url}/modules/calc`)).body.replicas.length === 1,
      10_000,
      'the scale-down to one replica',
    );
  });

  it('routes calls on a reference to the replica that holds it', async () => {
    await using pm = await startPodManager(
      { calc: { package: fixture('calc'), min_replicas: 3, max_replicas: 3 } },
      fast,
    );
    await eventually(
      async () =>
        (await http(`${pm.url}/modules/calc`)).body.replicas.filter((r: any) => r.state === 'ready')
          .length === 3,
      15_000,
      'three ready replicas',
    );
    const calc = pm.client.module<any>('calc');
    // Made concurrently, the references spread over the replicas.
    const matrices = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        calc.delayed(null, 30).then(() =>
          calc.matrix([
            [i, 0],
            [0, 1],
          ]),
        ),
      ),
    );
    const holders = new Set(matrices.map((m) => inspect(m).split('@')[1]));
    expect(holders.size).toBeGreaterThan(1);
    // Calls one at a time, every replica equally idle, go round the replicas (not all to the first).
    const single = connect(pm.url, { batch: false, reportIntervalMs: 0 });
    try {
      const pids = new Set<number>();
      for (let i = 0; i < 6; i++) pids.add(await single.module<any>('calc').pid());
      expect(pids.size).toBe(3);
    } finally {
      await single.close();
    }
    // Each call on a reference, and each call passing one, reaches the replica that holds it.
    for (const [i, m] of matrices.entries()) {
      expect(await m.get(0, 0)).toBe(i);
      expect(await m.scale(2).get(0, 0)).toBe(2 * i);
      expect(await calc.det(m)).toBe(i);
    }
  });

  it('bounds the cold-start queue: calls past the limit get 503 QUEUE_FULL at once', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc') } }, { queue_limit: 2 });
    const calls = Array.from({ length: 5 }, () =>
      http(`${pm.url}/modules/calc/invoke`, { method: 'POST', body: { path: 'add', args: [1, 1] } }),
    );
    const answers = await Promise.all(calls);
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 200, 503, 503, 503]);
    expect(answers.find((a) => a.status === 503)?.body.error.code).toBe('QUEUE_FULL');
  });

  it('answers 503 COLD_START_TIMEOUT when the module does not start in time', async () => {
    await using pm = await startPodManager(
      { 'slow-start': { package: fixture('slow-start') } },
      { queue_timeout_ms: 300 },
    );
    const answer = await http(`${pm.url}/modules/slow-start/invoke`, {
      method: 'POST',
      body: { path: 'ok' },
    });
    expect(answer.body.error?.code, JSON.stringify(answer.body)).toBe('COLD_START_TIMEOUT');
    expect(answer.status).toBe(503);
  });

  it('drains a server being stopped: the call in flight finishes', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    await calc.pid();
    // A chain is sent when it is awaited or then-ed, not when it is built.
    const inFlight = calc.delayed('finished', 700).then((v: string) => v);
    await new Promise((r) => setTimeout(r, 100));
    const stopped = http(`${pm.url}/modules/calc`, { method: 'DELETE' });
    expect(await inFlight).toBe('finished');
    const body = (await stopped).body;
    expect(body.state, JSON.stringify(body)).toBe('absent');
  });

  it('keeps a keep_warm module up: started at start-up and brought back when it dies', async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), keep_warm: true } }, fast);
    const ready = async () => (await http(`${pm.url}/modules/calc`)).body;
    const first = await eventually(
      async () => {
        const view = await ready();
        return view.state === 'ready' ? view : undefined;
      },
      15_000,
      'the keep-warm start',
    );
    expect(first.calls_served).toBe(0);
    process.kill(first.pid, 'SIGKILL');
    const second = await eventually(
      async () => {
        const view = await ready();
        return view.state === 'ready' && view.pid !== first.pid ? view : undefined;
      },
      15_000,
      'the keep-warm restart',
    );
    expect(second.restarts).toBe(1);
  });
});
