/**
 * Regressions from kill and restart runs: after SIGTERM, keep-alive connections that were busy kept
 * the old pod-manager (and a second set of module-servers) alive for up to 72 s; requests during the
 * shutdown got Fastify's own 503 body; clients saw a rolling restart as failed calls.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { connect } from '@splice-orc/client';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  eventually,
  isAlive,
  moduleServerChildren,
  serveCli,
  standardModules,
  writeConfig,
} from './harness.js';

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

describe('SIGTERM', () => {
  it('answers calls in flight, closes kept-alive connections and exits with its module-servers', async () => {
    const { child, url } = await serveCli(writeConfig(standardModules), running);
    const agent = new Agent({ connections: 4, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 });
    const post = (body: unknown) =>
      request(`${url}/modules/calc/invoke`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    // Two kept-alive connections: one will be busy when the stop begins, one idle.
    await Promise.all([post({ path: 'add', args: [1, 1] }), post({ path: 'add', args: [1, 2] })]).then((rs) =>
      Promise.all(rs.map((r) => r.body.text())),
    );
    const servers = moduleServerChildren(child.pid!);
    expect(servers.length).toBe(1);
    const busy = post({ path: 'delayed', args: ['late', 1_000] });
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    child.kill('SIGTERM');
    const answer = await busy;
    expect(answer.statusCode).toBe(200);
    expect(answer.headers.connection).toBe('close');
    expect(await answer.body.json()).toEqual({ value: 'late' });
    // The client keeps its pool open; the old process must go anyway.
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(8_000);
    for (const pid of servers) expect(isAlive(pid)).toBe(false);
    await agent.close();
  });
});

describe('a rolling restart of the pod-manager', () => {
  it('costs a client that keeps calling nothing: refused and shutting-down requests are sent again', async () => {
    const port = await freePort();
    const configPath = writeConfig(standardModules, { host: '127.0.0.1' });
    const first = await serveCli(configPath, running, port);
    const orc = connect(first.url, { timeoutMs: 20_000 });
    const calc = orc.module<any>('calc');
    expect(await calc.add(1, 1)).toBe(2);
    let stop = false;
    const results: Array<number | string> = [];
    const callers = Array.from({ length: 4 }, async (_, i) => {
      for (let n = 0; !stop; n++) {
        results.push(await calc.add(i, n).catch((error: Error) => `failed: ${error.message}`));
      }
    });
    await eventually(() => results.length > 50, 10_000, 'calls before the restart');
    first.child.kill('SIGTERM');
    await once(first.child, 'exit');
    const second = await serveCli(configPath, running, port);
    const before = results.length;
    await eventually(() => results.length > before + 50, 20_000, 'calls after the restart');
    stop = true;
    await Promise.all(callers);
    expect(results.filter((r) => typeof r === 'string')).toEqual([]);
    await orc.close();
    second.child.kill('SIGTERM');
    await once(second.child, 'exit');
  });
});
