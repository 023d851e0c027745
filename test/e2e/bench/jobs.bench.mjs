// `pnpm bench` (last part): batch jobs, measured against baselines of the same run.
//   (s) scheduling overhead per split: a job of a trivial batch: true function (`squares` of 10
//       inputs per split, one worker) against the same calls made one after another by a client;
//       the difference per split is what the job machinery costs (store, dispatch, results).
//   (w) items/s of a job whose splits take 20 ms each (a stand-in for inference) with 1, 2 and 4
//       workers, as ratios to 1 worker.
// The pod-manager runs as its own process, its module kept at 4 replicas (min_replicas), so no
// figure includes a replica's start.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect } from '@splice-orc/client';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SPLITS = Number(process.env.BENCH_JOB_SPLITS ?? 2000);
const SLOW_SPLITS = Number(process.env.BENCH_JOB_SLOW_SPLITS ?? 200);

const dir = mkdtempSync(join(tmpdir(), 'splice-bench-jobs-'));
const configPath = join(dir, 'config.json');
writeFileSync(
  configPath,
  JSON.stringify({
    module_config: {
      jobs: { package: `file:${join(root, 'test/fixtures/jobs')}`, min_replicas: 4, max_replicas: 4 },
    },
    server: {
      cache_dir: join(root, '.splice-cache'),
      state_file: join(dir, 'state.json'),
      port: 0,
      package_policy: { file_roots: [join(root, 'test/fixtures')] },
    },
    jobs: { max_workers: 8 },
  }),
);
const server = spawn(
  process.execPath,
  [join(root, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath],
  { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const match = /listening on (http:\/\/\S+)/.exec(line);
    if (match) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`pod-manager exited with ${code}`)));
});

/** Runs a job to its end; resolves with its time on the pod-manager (started to finished), ms. */
async function timedJob(orc, spec) {
  const job = await orc.jobs.submit(spec);
  const view = await job.done({ pollMs: 20 });
  if (view.state !== 'succeeded' || view.done !== spec.inputs.length)
    throw new Error(`job ${view.state}: ${view.error}`);
  return Date.parse(view.finished_at) - Date.parse(view.started_at);
}

try {
  const orc = connect(url, { timeoutMs: 120_000 });
  await orc.jobs.run({
    module: 'jobs',
    fn: 'squares',
    batch: true,
    inputs: [1, 2],
    workers: 4,
    split_size: 1,
  });
  const jobs = orc.module('jobs');
  const inputs = Array.from({ length: SPLITS * 10 }, (_, i) => i);

  // (s) the same splits as direct calls, one at a time, then as a job on one worker.
  await timedJob(orc, {
    module: 'jobs',
    fn: 'squares',
    batch: true,
    inputs: inputs.slice(0, 2000),
    split_size: 10,
  });
  const t0 = performance.now();
  for (let s = 0; s < SPLITS; s++) await jobs.squares(inputs.slice(s * 10, s * 10 + 10));
  const directMs = performance.now() - t0;
  const jobMs = await timedJob(orc, { module: 'jobs', fn: 'squares', batch: true, inputs, split_size: 10 });
  const f = (v) => v.toFixed(3).padStart(9);
  console.log(`\nbatch jobs: ${SPLITS} splits of 10 inputs, squares (batch: true), 1 worker      ms/split`);
  console.log(
    `direct calls, one at a time (baseline)                                ${f(directMs / SPLITS)}`,
  );
  console.log(`the job (started -> finished on the pod-manager)                       ${f(jobMs / SPLITS)}`);
  console.log(
    `scheduling overhead per split (job - direct)                          ${f((jobMs - directMs) / SPLITS)}`,
  );
  console.log(`ratio job/direct                                                      ${f(jobMs / directMs)}`);

  // (w) splits of 20 ms with 1, 2 and 4 workers.
  const slow = Array.from({ length: SLOW_SPLITS * 10 }, (_, x) => ({ x, ms: 20 }));
  const rates = {};
  for (const workers of [1, 2, 4]) {
    const ms = await timedJob(orc, {
      module: 'jobs',
      fn: 'slowSquares',
      batch: true,
      inputs: slow,
      split_size: 10,
      workers,
    });
    rates[workers] = slow.length / (ms / 1000);
  }
  console.log(
    `\nbatch jobs: ${SLOW_SPLITS} splits of 10 inputs taking 20 ms each              items/s   ratio to 1 worker`,
  );
  for (const workers of [1, 2, 4]) {
    console.log(
      `${workers} worker${workers > 1 ? 's' : ' '}                                                            ${rates[workers].toFixed(0).padStart(7)}   ${(rates[workers] / rates[1]).toFixed(2).padStart(6)}`,
    );
  }
  await orc.close();
} finally {
  server.kill('SIGTERM');
  await once(server, 'exit');
}
