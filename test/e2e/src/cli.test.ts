import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot, startPodManager } from './harness.js';

const run = promisify(execFile);
const cli = join(repoRoot, 'packages/pod-manager/dist/cli.js');

/** Runs `splice-orc ...`; resolves with its output and exit code instead of throwing. */
async function splice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      timeout: 60_000,
      env: { ...process.env, SPLICE_AUTH_TOKEN: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('splice-orc CLI against a running pod-manager', () => {
  it('lists, loads, inspects, configures and unloads modules', async () => {
    await using pm = await startPodManager();
    const list = await splice('modules', 'list', '--url', pm.url);
    expect(list.stdout.split('\n')[0]).toMatch(
      /^MODULE\s+MODE\s+PLACEMENT\s+STATE\s+REPLICAS\s+CALLS\s+IN FLIGHT$/,
    );
    expect(list.stdout).toMatch(/calc\s+remote\s+remote\s+absent\s+0\s+0\s+0/);

    const load = await splice('modules', 'load', 'calc', '--url', pm.url);
    expect(load.code).toBe(0);
    expect(JSON.parse(load.stdout)).toMatchObject({ name: 'calc', state: 'ready' });

    const status = await splice('modules', 'status', 'calc', '--url', pm.url);
    expect(JSON.parse(status.stdout)).toMatchObject({
      state: 'ready',
      usage: [expect.objectContaining({ memory_bytes: expect.any(Number) })],
    });

    const config = await splice('modules', 'config', 'calc', '--url', pm.url);
    expect(JSON.parse(config.stdout)).toMatchObject({ load_type: 'remote', max_replicas: 1 });

    const unload = await splice('modules', 'unload', 'calc', '--url', pm.url);
    expect(JSON.parse(unload.stdout)).toMatchObject({ state: 'absent' });
  });

  it('gets and sets the policy, and shows benchmark and tracking tables', async () => {
    await using pm = await startPodManager();
    expect(
      JSON.parse((await splice('policy', 'set', 'adaptive', '--min-gain', '1', '--url', pm.url)).stdout),
    ).toMatchObject({
      name: 'adaptive',
      min_gain_ms: 1,
    });
    expect(JSON.parse((await splice('policy', 'get', '--url', pm.url)).stdout)).toMatchObject({
      name: 'adaptive',
    });

    await splice('benchmark', 'start', '--url', pm.url);
    await splice('tracking', 'start', '--url', pm.url);
    for (let i = 0; i < 5; i++) await pm.client.module<any>('calc').add(i, i);
    const report = await splice('benchmark', 'report', '--url', pm.url);
    expect(report.stdout).toMatch(/^benchmark running/);
    expect(report.stdout).toMatch(/MODULE\s+CALLS\s+REQ\/S\s+MEAN MS\s+P50\s+P90\s+P95\s+P99\s+ERRORS/);
    expect(report.stdout).toMatch(/\ncalc\s+5\s/);
    expect(report.stdout).toMatch(/\(overall\)\s+5\s/);
    const tracking = await splice('tracking', 'show', '--url', pm.url);
    expect(tracking.stdout).toMatch(/calc\s+5\s/);
  });

  it('says clearly when the pod-manager cannot be reached or refuses the token', async () => {
    const unreachable = await splice('modules', 'list', '--url', 'http://127.0.0.1:59999');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(
      /^splice-orc: cannot reach the pod-manager at http:\/\/127\.0\.0\.1:59999/,
    );
    await using pm = await startPodManager(undefined, { auth_token: 'the-right-token-0123456789' });
    const refused = await splice('modules', 'list', '--url', pm.url, '--token', 'a-wrong-token-0123456789');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNAUTHENTICATED/);
    const ok = await splice('modules', 'list', '--url', pm.url, '--token', 'the-right-token-0123456789');
    expect(ok.code).toBe(0);
  });
});
