import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { fixture, splice, startPodManager } from './harness.js';

it('submits and waits, lists, shows, writes results and cancels jobs from the CLI', async () => {
  await using pm = await startPodManager({ jobs: { package: fixture('jobs') } });
  const dir = mkdtempSync(join(tmpdir(), 'splice-jobs-cli-'));
  const spec = join(dir, 'spec.json');
  writeFileSync(
    spec,
    JSON.stringify({ module: 'jobs', fn: 'square', inputs: [1, 2, 3, 4, 5], split_size: 2 }),
  );
  const submitted = await splice('jobs', 'submit', spec, '--wait', '--url', pm.url);
  expect(submitted.code, submitted.stderr).toBe(0);
  const job = JSON.parse(submitted.stdout);
  expect(job).toMatchObject({ state: 'succeeded', done: 5, total: 5 });
  expect(submitted.stderr).toMatch(/\d+\/5 [\d.]+ items\/s ETA .* retries 0 copies 0/);

  const list = await splice('jobs', 'list', '--url', pm.url);
  const [head, row] = list.stdout.split('\n');
  expect(head).toMatch(
    /^ID\s+STATE\s+MODULE\s+FN\s+DONE\s+TOTAL\s+FAILED\s+WORKERS\s+RETRIES\s+COPIES\s+ITEMS\/S\s+CREATED$/,
  );
  expect(row).toMatch(new RegExp(`^${job.id}\\s+succeeded\\s+jobs\\s+square\\s+5\\s+5\\s+0\\s+1\\s+0\\s+0`));

  const status = JSON.parse((await splice('jobs', 'status', job.id, '--url', pm.url)).stdout);
  expect(status.splits.map((s: { count: number }) => s.count)).toEqual([2, 2, 1]);

  const out = join(dir, 'results.ndjson');
  expect((await splice('jobs', 'results', job.id, '--out', out, '--url', pm.url)).code).toBe(0);
  const lines = readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => l.value)).toEqual([1, 4, 9, 16, 25]);

  const slow = join(dir, 'slow.json');
  const inputs = Array.from({ length: 50 }, (_, x) => ({ x, ms: 200 }));
  writeFileSync(
    slow,
    JSON.stringify({ module: 'jobs', fn: 'slowSquares', batch: true, inputs, split_size: 1 }),
  );
  const running = JSON.parse((await splice('jobs', 'submit', slow, '--url', pm.url)).stdout);
  const cancelled = await splice('jobs', 'cancel', running.id, '--url', pm.url);
  expect(JSON.parse(cancelled.stdout)).toMatchObject({ id: running.id, state: 'cancelled' });

  writeFileSync(spec, JSON.stringify({ module: 'jobs', fn: 'square', inputs: [1], split_size: 0 }));
  const bad = await splice('jobs', 'submit', spec, '--url', pm.url);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/JOB_SPEC_INVALID: .*split_size/);
});
