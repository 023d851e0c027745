import { describe, expect, it } from 'vitest';
import { http, moduleServerChildren, startPodManager } from './harness.js';

describe('cold start', () => {
  it('starts exactly one server for 50 concurrent first calls, and all of them are served by it', async () => {
    await using pm = await startPodManager();
    const calc = pm.client.module<any>('calc');
    expect(moduleServerChildren(process.pid)).toEqual([]);
    const pids = await Promise.all(Array.from({ length: 50 }, () => calc.pid()));
    expect(new Set(pids).size).toBe(1);
    expect(moduleServerChildren(process.pid)).toEqual([pids[0]]);
    const status = await http(`${pm.url}/modules/calc`);
    expect(status.body).toMatchObject({ state: 'ready', pid: pids[0], restarts: 0, calls_served: 50 });
  });
});
