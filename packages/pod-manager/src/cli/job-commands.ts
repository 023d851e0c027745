/**
 * `splice-orc jobs ...`: submit a job from a JSON spec file (optionally waiting with a live
 * progress bar: done/total, rate, ETA, retries, speculative copies; plain lines when stderr is not
 * a terminal), list jobs as a table, show one, write its results, cancel it.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createTransport, SpliceError } from '@splice-orc/client';
import { Rest } from '@splice-orc/protocol';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { canRedraw } from './load-progress.js';
import { CliError, type RemoteOptions, table } from './remote-commands.js';

/** Adds the `jobs` commands; `remote` adds the --url and --token options. */
export function addJobCommands(program: Command, remote: (cmd: Command) => Command): void {
  const jobs = program.command('jobs').description('batch jobs: map a module function over many inputs');
  remote(
    jobs.command('submit <spec>').description('submit a job from a JSON spec file (module, fn, inputs, ...)'),
  )
    .option('-w, --wait', 'wait for the job to end, showing its progress')
    .action(async (file: string, o: RemoteOptions & { wait?: boolean }) => {
      const spec = JSON.parse(await readFile(file, 'utf8')) as unknown;
      const view = (await request(o, 'POST', Rest.Paths.jobs, spec)) as Rest.JobView;
      if (!o.wait) return json(view);
      const final = await watch(o, view);
      json(final);
      if (final.state !== 'succeeded')
        throw new CliError(`job ${final.id} ${final.state}${final.error ? `: ${final.error}` : ''}`);
    });
  remote(jobs.command('list').description('jobs, newest first')).action(async (o: RemoteOptions) => {
    const { jobs: list } = (await request(o, 'GET', Rest.Paths.jobs)) as Rest.JobList;
    table(
      [
        'ID',
        'STATE',
        'MODULE',
        'FN',
        'DONE',
        'TOTAL',
        'FAILED',
        'WORKERS',
        'RETRIES',
        'COPIES',
        'ITEMS/S',
        'CREATED',
      ],
      list.map((j) => [
        j.id,
        j.state,
        j.module,
        j.fn,
        j.done,
        j.total,
        j.failed,
        j.workers,
        j.retries,
        j.speculative,
        j.rate,
        j.created_at,
      ]),
    );
  });
  remote(jobs.command('status <id>').description('one job with its splits')).action(
    async (id: string, o: RemoteOptions) => json(await request(o, 'GET', Rest.Paths.job(id))),
  );
  remote(jobs.command('cancel <id>').description('cancel a queued or running job')).action(
    async (id: string, o: RemoteOptions) => json(await request(o, 'DELETE', Rest.Paths.job(id))),
  );
  remote(jobs.command('results <id>').description("the results as NDJSON lines, in the job's order"))
    .option('-o, --out <file>', 'write them to a file instead of stdout')
    .action(async (id: string, o: RemoteOptions & { out?: string }) => {
      const out = o.out ? createWriteStream(o.out) : process.stdout;
      const transport = createTransport(o.url, { token: o.token, resend: false });
      try {
        for (let offset = 0; ; ) {
          const page = await transport.bytes(
            'GET',
            `${Rest.Paths.jobResults(id)}?offset=${offset}&limit=10000`,
            {
              timeoutMs: 60_000,
            },
          );
          const lines = page.toString('utf8').split('\n').filter(Boolean);
          if (lines.length === 0) break;
          out.write(`${lines.join('\n')}\n`);
          offset = (JSON.parse(lines.at(-1) as string) as { position: number }).position + 1;
        }
      } catch (error) {
        throw cliError(error);
      } finally {
        await transport.close();
        if (out !== process.stdout) await new Promise<void>((resolve) => out.end(() => resolve()));
      }
    });
}

/**
 * Polls the job until it ends, drawing a bar on a terminal (the same test as `modules load`'s
 * spinner: not under CI) and a line every few seconds elsewhere.
 */
async function watch(o: RemoteOptions, first: Rest.JobView): Promise<Rest.JobView> {
  const tty = canRedraw(process.stderr);
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        '{bar} {value}/{total} | {rate} items/s | ETA {eta_s}s | {state} | retries {retries} | copies {copies}',
      hideCursor: true,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
  const fields = (v: Rest.JobView) => ({
    rate: v.rate,
    eta_s: v.eta_s ?? '-',
    state: v.state,
    retries: v.retries,
    copies: v.speculative,
  });
  if (tty) bar.start(first.total, 0, fields(first));
  let view = first;
  let lastLine = 0;
  try {
    while (!['succeeded', 'failed', 'cancelled'].includes(view.state)) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      view = (await request(o, 'GET', `${Rest.Paths.job(first.id)}?splits=0`)) as Rest.JobView;
      const done = view.done + view.failed;
      if (tty) bar.update(done, fields(view));
      else if (Date.now() - lastLine > 2_000) {
        lastLine = Date.now();
        process.stderr.write(
          `${view.state} ${done}/${view.total} ${view.rate} items/s ETA ${view.eta_s ?? '-'} s retries ${view.retries} copies ${view.speculative}\n`,
        );
      }
    }
  } finally {
    if (tty) bar.stop();
  }
  return view;
}

async function request(o: RemoteOptions, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) {
  const transport = createTransport(o.url, { token: o.token, resend: false });
  try {
    return await transport.json(method, path, { timeoutMs: 60_000 }, body);
  } catch (error) {
    throw cliError(error);
  } finally {
    await transport.close();
  }
}

function cliError(error: unknown): unknown {
  if (!(error instanceof SpliceError)) return error;
  const reason = error.details.reason;
  return new CliError(reason === undefined ? error.message : `${String(reason)}: ${error.message}`);
}

function json(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
