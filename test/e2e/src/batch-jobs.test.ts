/**
 * Batch jobs against a real pod-manager and real module-server replicas: results complete, once
 * and in order; stragglers copied; a replica killed mid-job; limits, queueing and cancel; bad specs.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually, fixture, http, moduleServerChildren, startPodManager, writeConfig } from './harness.js';

const modules = { jobs: { package: fixture('jobs') } };

/** Waits for a job to end; resolves with its view. */
async function ended(url: string, id: string, timeoutMs = 60_000): Promise<any> {
  return eventually(
    async () => {
      const { body } = await http(`${url}/jobs/${id}`);
      return ['succeeded', 'failed', 'cancelled'].includes(body.state) ? body : undefined;
    },
    timeoutMs,
    `job ${id} to end`,
  );
}

/** Every NDJSON result of a job, read page by page from the offset. */
async function ndjsonResults(
  url: string,
  id: string,
): Promise<Array<{ index: number; value?: any; error?: any }>> {
  const out: any[] = [];
  for (let offset = 0; ; ) {
    const text = await (await fetch(`${url}/jobs/${id}/results?offset=${offset}&limit=3000`)).text();
    const lines = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    if (lines.length === 0) return out;
    out.push(...lines);
    offset = lines.at(-1).position + 1;
  }
}

describe('batch jobs', () => {
  it('maps 10,000 inputs over 4 workers with dynamic splits: every result once, correct, in order', async () => {
    await using pm = await startPodManager(modules);
    const inputs = Array.from({ length: 10_000 }, (_, i) => i);
    const started = performance.now();
    const results = await pm.client.jobs.run<number>(
      { module: 'jobs', fn: 'square', inputs, workers: 4, split_size: 250, dynamic: true },
      { pollMs: 50 },
    );
    console.log(`10,000 inputs, 4 workers, per item: ${Math.round(performance.now() - started)} ms`);
    expect(results).toHaveLength(10_000);
    expect(results.every((r, i) => r === i * i)).toBe(true);
    const { body: job } = await http(`${pm.url}/jobs`);
    const view = (await http(`${pm.url}/jobs/${job.jobs[0].id}`)).body;
    expect(view).toMatchObject({
      state: 'succeeded',
      total: 10_000,
      done: 10_000,
      splits_total: 40,
      workers: 4,
    });
    // The 4 workers were 4 replicas, each of which ran splits (fast replicas take more).
    expect(new Set(view.splits.map((s: any) => s.replica)).size).toBe(4);
    const lines = await ndjsonResults(pm.url, view.id);
    expect(lines.map((l) => l.index)).toEqual(inputs);
    const metrics = await (await fetch(`${pm.url}/metrics`)).text();
    expect(metrics).toMatch(/splice_job_splits_total\{module="jobs",event="finished"\} 40\n/);
    expect(metrics).toMatch(/splice_job_items_total\{module="jobs"\} 10000\n/);
    expect(metrics).toMatch(/splice_jobs\{state="succeeded"\} 1\n/);
    expect(metrics).toMatch(/splice_job_split_duration_seconds_count\{module="jobs"\} 40\n/);
    // After the job its extra replicas are removed again.
    await eventually(
      async () => (await http(`${pm.url}/modules/jobs`)).body.replicas.length === 1,
      15_000,
      'scale back',
    );
  });

  it('calls a batch: true function once per split, and returns errors as values with return_errors', async () => {
    await using pm = await startPodManager(modules);
    const squares = await pm.client.jobs.run<number>({
      module: 'jobs',
      fn: 'squares',
      batch: true,
      inputs: [1, 2, 3, 4, 5, 6, 7],
      split_sizes: [3, 1, 3],
    });
    expect(squares).toEqual([1, 4, 9, 16, 25, 36, 49]);
    const job = await pm.client.jobs.submit({
      module: 'jobs',
      fn: 'sqrt',
      inputs: [4, -1, 9],
      return_errors: true,
      max_retries: 0,
      order: 'completion',
    });
    const view = await job.done({ pollMs: 50 });
    expect(view).toMatchObject({ state: 'succeeded', done: 2, failed: 1 });
    const byIndex = new Map<number, any>();
    for await (const r of job.results()) byIndex.set(r.index, r);
    expect(byIndex.get(0).value).toBe(2);
    expect(byIndex.get(2).value).toBe(3);
    expect(byIndex.get(1).error.remoteName).toBe('RangeError');
    // A batch: true function must return one result per input: an input never silently becomes null.
    await expect(
      pm.client.jobs.run({ module: 'jobs', fn: 'short', batch: true, inputs: [1, 2, 3], max_retries: 0 }),
    ).rejects.toThrow(/must return a list as long as its input \(3\), got a list of 2/);
    // Without return_errors the job fails, naming the split and the error.
    await expect(
      pm.client.jobs.run({ module: 'jobs', fn: 'sqrt', inputs: [-4], max_retries: 1 }),
    ).rejects.toThrow(/failed 2 times; last: .*no real square root/);
  });

  it('copies stragglers with speculation: the job ends with correct results and copies made', async () => {
    await using pm = await startPodManager(modules);
    // 60 splits of 20 ms; a fifth of the attempts are delayed by up to 2 s (20 to 100 times slower).
    // With a tenth, about 1.5 % of runs had no straggler late enough to copy; with a fifth, 0.01 %.
    const inputs = Array.from({ length: 600 }, (_, x) => ({ x, ms: 20 }));
    const spec = {
      module: 'jobs',
      fn: 'slowSquares',
      batch: true,
      inputs,
      split_size: 10,
      workers: 3,
      max_retries: 0,
      inject: { delay_rate: 0.2, delay_max_ms: 2_000 },
    };
    await pm.client.jobs.run(spec); // warm: the 3 replicas start here
    const timed = async (extra: object) => {
      const started = performance.now();
      const job = await pm.client.jobs.submit({ ...spec, ...extra });
      const view = await job.done({ pollMs: 20 });
      const ms = Math.round(performance.now() - started);
      const results: number[] = [];
      for await (const r of job.results<number>()) results[r.index] = r.value as number;
      expect(results).toEqual(inputs.map(({ x }) => x * x));
      return { ms, view };
    };
    const off = await timed({});
    const on = await timed({
      speculation: { multiplier: 3, quantile: 0.3, interval_ms: 20, extra_worker: true },
    });
    console.log(
      `stragglers: speculation off ${off.ms} ms, on ${on.ms} ms (${on.view.speculative} copies); ratio on/off ${(on.ms / off.ms).toFixed(2)}`,
    );
    expect(off.view.speculative).toBe(0);
    expect(on.view.speculative).toBeGreaterThan(0);
    expect(on.view.done).toBe(600);
  });

  it('retries failed split attempts until they succeed, with static splits dealt to the workers', async () => {
    await using pm = await startPodManager(modules);
    const inputs = Array.from({ length: 400 }, (_, i) => i);
    const job = await pm.client.jobs.submit({
      module: 'jobs',
      fn: 'squares',
      batch: true,
      inputs,
      workers: 2,
      dynamic: false,
      // 20 splits dealt to the 2 workers: with 40 % of attempts failing, some split is retried
      // but with chance 0.6^20 (with 2 splits, 0.6^2 = 36 % of runs had no retry at all).
      split_sizes: Array.from({ length: 20 }, () => 20),
      max_retries: 20,
      inject: { error_rate: 0.4 },
    });
    const view = await job.done({ pollMs: 50 });
    expect(view).toMatchObject({ state: 'succeeded', done: 400, splits_total: 20 });
    expect(view.retries).toBeGreaterThan(0);
    const { body } = await http(`${pm.url}/jobs/${job.id}`);
    expect(body.splits.map((s: any) => s.count)).toEqual(Array.from({ length: 20 }, () => 20));
    // A page of the splits, or none (what polls ask for).
    const page = await http(`${pm.url}/jobs/${job.id}?split_offset=5&splits=3`);
    expect(page.body.splits.map((s: any) => s.index)).toEqual([5, 6, 7]);
    expect(page.body).toMatchObject({ splits_total: 20, done: 400 });
    expect((await http(`${pm.url}/jobs/${job.id}?splits=0`)).body.splits).toBeUndefined();
    expect(view.splits).toBeUndefined();
    expect((await pm.client.jobs.get(job.id)).progress.splits).toHaveLength(20);
    // Failed attempts were sent again (each time to the replica it did not fail on).
    const retried = body.splits.filter((s: any) => s.attempts > 1);
    expect(retried.length).toBeGreaterThan(0);
    const results: number[] = [];
    for await (const r of job.results<number>()) results[r.index] = r.value as number;
    expect(results).toEqual(inputs.map((x) => x * x));
    const metrics = await (await fetch(`${pm.url}/metrics`)).text();
    expect(metrics).toMatch(
      new RegExp(`splice_job_splits_total\\{module="jobs",event="retried"\\} ${view.retries}\\n`),
    );
  });

  it('sends a failed split to another replica: one replica failing every split does not fail the job', async () => {
    await using pm = await startPodManager(modules, { isolate_modules: false });
    const marker = join(mkdtempSync(join(tmpdir(), 'splice-jobs-')), 'broken-replica');
    const inputs = Array.from({ length: 40 }, (_, x) => ({ x, marker }));
    // One retry per split: a retry sent back to the replica it failed on would fail the job.
    const job = await pm.client.jobs.submit({
      module: 'jobs',
      fn: 'squaresButOneReplicaFails',
      batch: true,
      inputs,
      split_size: 2,
      workers: 2,
      max_retries: 1,
    });
    const view = await job.done({ pollMs: 50 });
    expect(view).toMatchObject({ state: 'succeeded', done: 40 });
    expect(view.retries).toBeGreaterThan(0);
    // Every split ended on the replica that works, including those first sent to the broken one.
    const brokenPid = Number(readFileSync(marker, 'utf8'));
    const { body: module } = await http(`${pm.url}/modules/jobs`);
    const broken = module.replicas.find((r: any) => r.pid === brokenPid)?.id;
    expect(broken).toBeDefined();
    const { body } = await http(`${pm.url}/jobs/${job.id}`);
    expect(body.splits.filter((s: any) => s.attempts > 1).length).toBe(view.retries);
    expect(body.splits.filter((s: any) => s.replica === broken)).toEqual([]);
    const results: number[] = [];
    for await (const r of job.results<number>()) results[r.index] = r.value as number;
    expect(results).toEqual(inputs.map(({ x }) => x * x));
  });

  it('keeps the replicas a job holds while the lifecycle loop would scale the module down', async () => {
    // A loop that scales down at once, every 20 ms. The job's speculative extra worker waits idle
    // for copies (quantile 1: none are made): without the job's hold, the loop takes its replica.
    const config = writeConfig(modules, {
      scale_down_delay_s: 0,
      scale_window_s: 0,
      lifecycle_interval_ms: 20,
    });
    await using pm = await startPodManager(modules, {}, config);
    const inputs = Array.from({ length: 40 }, (_, x) => ({ x, ms: 50 }));
    const job = await pm.client.jobs.submit({
      module: 'jobs',
      fn: 'slowSquares',
      batch: true,
      inputs,
      split_size: 2,
      workers: 2,
      speculation: { extra_worker: true, quantile: 1 },
    });
    await eventually(async () => (await job.refresh()).splits_done >= 1, 20_000, 'the first split');
    let fewest = Number.POSITIVE_INFINITY;
    for (;;) {
      const { body } = await http(`${pm.url}/modules/jobs`);
      // Counted only if the job still ran after the count was read: it releases its hold only
      // once it has ended (its state is stored first), so a count read then may be smaller.
      if ((await job.refresh()).state !== 'running') break;
      fewest = Math.min(fewest, body.replicas.filter((r: any) => r.state === 'ready').length);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(job.progress.state).toBe('succeeded');
    expect(fewest).toBe(3);
  });

  it('completes with every result once when a replica is killed mid-job', async () => {
    await using pm = await startPodManager(modules);
    const inputs = Array.from({ length: 400 }, (_, x) => ({ x, ms: 60 }));
    const job = await pm.client.jobs.submit({
      module: 'jobs',
      fn: 'slowSquares',
      batch: true,
      inputs,
      split_size: 10,
      workers: 3,
      max_retries: 3,
    });
    await eventually(async () => (await job.refresh()).splits_done >= 5, 30_000, 'five splits done');
    const [victim] = moduleServerChildren(process.pid);
    expect(victim).toBeDefined();
    process.kill(victim as number, 'SIGKILL');
    const view = await job.done({ pollMs: 50 });
    expect(view).toMatchObject({ state: 'succeeded', done: 400, failed: 0 });
    const lines = await ndjsonResults(pm.url, job.id);
    expect(lines.map((l) => l.index)).toEqual(inputs.map((_, i) => i));
    expect(lines.every((l, i) => l.value === i * i)).toBe(true);
  });

  it('refuses a run past max_workers with 409, queues a submit that runs later, cancels queued and running jobs', async () => {
    const config = writeConfig(modules, {}, { jobs: { max_workers: 2, max_running: 2, max_queued: 2 } });
    await using pm = await startPodManager(modules, {}, config);
    const slow = (n: number) => ({
      module: 'jobs',
      fn: 'slowSquares',
      batch: true,
      workers: 2,
      split_size: 1,
      inputs: Array.from({ length: n }, (_, x) => ({ x, ms: 100 })),
    });
    const first = await pm.client.jobs.submit(slow(8));
    expect(first.progress.state).toBe('running');
    const refused = await http(`${pm.url}/jobs?when_busy=refuse`, { method: 'POST', body: slow(2) });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('JOB_WORKERS_UNAVAILABLE');
    await expect(pm.client.jobs.run(slow(2))).rejects.toMatchObject({
      details: { reason: 'JOB_WORKERS_UNAVAILABLE' },
    });
    const second = await pm.client.jobs.submit(slow(4));
    const third = await pm.client.jobs.submit(slow(4));
    expect([second.progress.state, third.progress.state]).toEqual(['queued', 'queued']);
    const full = await http(`${pm.url}/jobs`, { method: 'POST', body: slow(1) });
    expect([full.status, full.body.error.code]).toEqual([429, 'JOB_QUEUE_FULL']);
    const { body: listed } = await http(`${pm.url}/jobs`);
    expect(listed.jobs.map((j: any) => j.state)).toEqual(['queued', 'queued', 'running']);
    expect((await third.cancel()).state).toBe('cancelled');
    expect((await first.done({ pollMs: 50 })).state).toBe('succeeded');
    // The queued job starts once the workers are free, and runs to the end.
    expect((await second.done({ pollMs: 50 })).state).toBe('succeeded');
    const fourth = await pm.client.jobs.submit(slow(20));
    await eventually(async () => (await fourth.refresh()).splits_done >= 2, 20_000, 'the fourth job to run');
    expect((await fourth.cancel()).state).toBe('cancelled');
    const after = await ended(pm.url, fourth.id);
    expect(after.done).toBeLessThan(20);
  });

  it('refuses bad specs with 400 naming the field, and stores nothing for them', async () => {
    const config = writeConfig(modules, {}, { jobs: { max_body_bytes: 64 * 1024 } });
    await using pm = await startPodManager(modules, {}, config);
    const cases: Array<[unknown, RegExp]> = [
      [{ module: 'nope', fn: 'square', inputs: [1] }, /module/],
      [{ module: 'jobs', inputs: [1] }, /fn/],
      [{ module: 'jobs', fn: 'square', inputs: [1], split_size: 0 }, /split_size/],
      [{ module: 'jobs', fn: 'square', inputs: [1], workers: 1e9 }, /workers/],
      [{ module: 'jobs', fn: 'square', inputs: 'abc' }, /inputs/],
      [{ module: 'jobs', fn: 'square', inputs: [] }, /inputs/],
      [{ module: 'jobs', fn: 'square', inputs: [1, 2], split_sizes: [1] }, /split_sizes/],
      [{ module: 'jobs', fn: 'square', inputs: [1], surprise: true }, /surprise/],
    ];
    for (const [body, field] of cases) {
      const answer = await http(`${pm.url}/jobs`, { method: 'POST', body });
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.error.code).toBe('JOB_SPEC_INVALID');
      expect(answer.body.error.message).toMatch(field);
    }
    const ndjson = await http(`${pm.url}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"module": "jobs", "fn": "square"}\n1\n{oops\n',
    });
    expect([ndjson.status, ndjson.body.error.code]).toEqual([400, 'JOB_SPEC_INVALID']);
    expect(ndjson.body.error.message).toMatch(/line 3/);
    const big = await http(`${pm.url}/jobs`, {
      method: 'POST',
      body: { module: 'jobs', fn: 'square', inputs: Array.from({ length: 20_000 }, (_, i) => i) },
    });
    expect([big.status, big.body.error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    expect((await http(`${pm.url}/jobs`)).body.jobs).toEqual([]);
    // A good NDJSON upload runs.
    const good = await http(`${pm.url}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"module": "jobs", "fn": "square"}\n3\n4\n',
    });
    expect(good.status).toBe(200);
    expect((await ended(pm.url, good.body.id)).state).toBe('succeeded');
    expect((await ndjsonResults(pm.url, good.body.id)).map((l) => l.value)).toEqual([9, 16]);
    expect((await http(`${pm.url}/jobs/nope`)).body.error.code).toBe('JOB_NOT_FOUND');
  });
});
