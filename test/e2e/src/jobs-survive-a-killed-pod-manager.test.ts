/**
 * Durable jobs: a pod-manager killed (SIGKILL) mid-job and started again on the same state
 * directory resumes the job; splits finished before the kill are not run again (the fixture
 * appends a line per call to a file, so runs are counted), and every input ends with one result.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import {
  cliPath,
  eventually,
  fixture,
  http,
  isAlive,
  moduleServerChildren,
  serveCli,
  writeConfig,
} from './harness.js';

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) child.kill('SIGKILL');
});

it('resumes a job after SIGKILL without running its finished splits again', async () => {
  const log = join(mkdtempSync(join(tmpdir(), 'splice-jobs-')), 'calls.log');
  // The fixture writes its call log: module-servers may write here (isolation off).
  const config = writeConfig({ jobs: { package: fixture('jobs') } }, { isolate_modules: false });
  const first = await serveCli(config, running);
  const inputs = Array.from({ length: 200 }, (_, x) => ({ x, log, ms: 80 }));
  const submitted = await http(`${first.url}/jobs`, {
    method: 'POST',
    body: { module: 'jobs', fn: 'logged', batch: true, inputs, split_size: 10, workers: 2 },
  });
  expect(submitted.status).toBe(200);
  const id = submitted.body.id as string;
  const before = await eventually(
    async () => {
      const { body } = await http(`${first.url}/jobs/${id}`);
      return body.splits_done >= 6 ? body : undefined;
    },
    60_000,
    'six splits done',
  );
  const servers = moduleServerChildren(first.child.pid as number);
  first.child.kill('SIGKILL');
  await eventually(() => !isAlive(first.child.pid as number), 5_000, 'the pod-manager to die');
  for (const pid of servers) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  const doneBefore: number[] = before.splits.filter((s: any) => s.state === 'done').map((s: any) => s.index);

  const second = await serveCli(config, running);
  const after = await eventually(
    async () => {
      const { body } = await http(`${second.url}/jobs/${id}`);
      return ['succeeded', 'failed', 'cancelled'].includes(body.state) ? body : undefined;
    },
    60_000,
    'the job to end after the restart',
  );
  expect(after).toMatchObject({ state: 'succeeded', done: 200, splits_done: 20 });
  // Each call logged the inputs of its split: how often each split ran.
  const runs = new Map<number, number>();
  for (const line of readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
    const split = Number(line.split(',')[0]) / 10;
    runs.set(split, (runs.get(split) ?? 0) + 1);
  }
  console.log(
    `durable resume: ${doneBefore.length} splits done before the kill, ${[...runs.values()].reduce((a, b) => a + b, 0)} calls for 20 splits`,
  );
  for (const split of doneBefore) expect(runs.get(split), `split ${split} ran again`).toBe(1);
  for (let split = 0; split < 20; split++) expect(runs.get(split) ?? 0).toBeGreaterThanOrEqual(1);
  // Every input has exactly one result, the right one.
  const text = await (await fetch(`${second.url}/jobs/${id}/results`)).text();
  const results = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  expect(results.map((r) => r.index)).toEqual(inputs.map((_, i) => i));
  expect(results.every((r) => r.value === r.index * 2)).toBe(true);
});

it('refuses a second pod-manager on the same state directory while the first runs', async () => {
  const config = writeConfig({ jobs: { package: fixture('jobs') } });
  const first = await serveCli(config, running);
  const second = spawnSync(process.execPath, [cliPath, 'serve', '--config', config, '--port', '0'], {
    env: { ...process.env, SPLICE_AUTH_TOKEN: '', LOG_LEVEL: 'warn' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(second.status, second.stderr).toBe(1);
  expect(second.stderr).toMatch(/the jobs database \S+ is in use by another pod-manager/);
  // The first serves on; killed, it leaves no lock behind: the next one starts on the same state.
  expect((await http(`${first.url}/jobs`)).status).toBe(200);
  const gone = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGKILL');
  await gone;
  const third = await serveCli(config, running);
  expect((await http(`${third.url}/jobs`)).status).toBe(200);
});
