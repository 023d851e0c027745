/**
 * The `splice-orc` commands that talk to a running pod-manager: modules, policy, benchmark and
 * tracking. Output is a readable table where the answer is a list, indented JSON otherwise.
 */
import { createTransport, SpliceError } from '@splice-orc/client';
import { Rest } from '@splice-orc/protocol';
import type { Command } from 'commander';
import stringWidth from 'string-width';
import { readEnvironment } from '../config.js';
import { addJobCommands } from './job-commands.js';
import { elapsed, progressView } from './load-progress.js';

/** Options every remote command takes. */
export interface RemoteOptions {
  url: string;
  token?: string;
}

/** Adds the remote commands to the program. */
export function addRemoteCommands(program: Command): void {
  const remote = (cmd: Command) =>
    cmd
      .option('-u, --url <url>', 'pod-manager URL', readEnvironment().podManagerUrl)
      .option(
        '-t, --token <token>',
        'bearer token (default: SPLICE_AUTH_TOKEN)',
        readEnvironment().authToken,
      );

  const modules = program.command('modules').description('list, inspect, load, unload and configure modules');
  remote(modules.command('list').description('every configured module and its state')).action(
    async (o: RemoteOptions) => {
      const { modules: list } = (await call(o, 'GET', Rest.Paths.modules)) as {
        modules: Array<Record<string, unknown>>;
      };
      table(
        ['MODULE', 'MODE', 'PLACEMENT', 'STATE', 'REPLICAS', 'CALLS', 'IN FLIGHT'],
        list.map((m) => [
          m.name,
          m.mode,
          m.placement,
          m.state,
          (m.replicas as unknown[]).length,
          m.calls_served,
          m.in_flight,
        ]),
      );
    },
  );
  remote(modules.command('status <name>').description('one module in detail')).action(
    async (name: string, o: RemoteOptions) => json(await call(o, 'GET', Rest.Paths.module(name))),
  );
  remote(
    modules
      .command('load <name>')
      .description('start a module (and set its mode) and wait until it is ready'),
  )
    .option('-m, --mode <mode>', 'remote | local | auto')
    .action(async (name: string, o: RemoteOptions & { mode?: string }) => json(await load(name, o)));
  remote(modules.command('unload <name>').description("stop a module's servers")).action(
    async (name: string, o: RemoteOptions) => json(await call(o, 'POST', Rest.Paths.unload(name))),
  );
  remote(modules.command('config <name>').description("show a module's config, or set it from a JSON file"))
    .option('-f, --file <file>', 'JSON file with the new module config (validated like config.json)')
    .action(async (name: string, o: RemoteOptions & { file?: string }) => {
      const path = Rest.Paths.config(name);
      if (!o.file) return json(await call(o, 'GET', path));
      const { readFile } = await import('node:fs/promises');
      json(await call(o, 'PUT', path, JSON.parse(await readFile(o.file, 'utf8'))));
    });

  addJobCommands(program, remote);

  const policy = program.command('policy').description('the placement policy');
  remote(policy.command('get').description('the active policy and placements')).action(
    async (o: RemoteOptions) => json(await call(o, 'GET', Rest.Paths.policy)),
  );
  remote(policy.command('set <name>').description('default | adaptive'))
    .option('--interval <s>', 're-evaluation period, s', Number)
    .option('--budget <quantity>', 'client memory budget, e.g. 512Mi')
    .option('--min-gain <ms>', 'least time saved per call for local placement, ms', Number)
    .action(
      async (name: string, o: RemoteOptions & { interval?: number; budget?: string; minGain?: number }) => {
        const body = { name, interval_s: o.interval, client_memory_budget: o.budget, min_gain_ms: o.minGain };
        json(
          await call(
            o,
            'PUT',
            Rest.Paths.policy,
            Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)),
          ),
        );
      },
    );

  const benchmark = program.command('benchmark').description('latency and throughput of forwarded calls');
  for (const [verb, method, path] of [
    ['start', 'POST', Rest.Paths.benchmark('start')],
    ['stop', 'POST', Rest.Paths.benchmark('stop')],
    ['report', 'GET', Rest.Paths.benchmark('report')],
  ] as const) {
    remote(benchmark.command(verb)).action(async (o: RemoteOptions) =>
      benchmarkTable(await call(o, method, path)),
    );
  }

  const tracking = program.command('tracking').description('placement changes over time and mean call times');
  for (const [verb, method, path] of [
    ['start', 'POST', Rest.Paths.tracking('start')],
    ['stop', 'POST', Rest.Paths.tracking('stop')],
    ['show', 'GET', Rest.Paths.tracking()],
  ] as const) {
    remote(tracking.command(verb)).action(async (o: RemoteOptions) =>
      trackingTable(await call(o, method, path)),
    );
  }
}

/**
 * One request through the client SDK's HTTP transport (the contract's paths, headers and error
 * body, as every client reads them); a failure is one line: the service's code and message. The
 * CLI does not wait for a pod-manager that is down: no resending.
 */
async function call(
  o: RemoteOptions,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<unknown> {
  const transport = createTransport(o.url, { token: o.token, resend: false });
  try {
    return await transport.json(method, path, { timeoutMs }, body);
  } catch (error) {
    if (!(error instanceof SpliceError)) throw error;
    // An answer of the pod-manager carries its code; one that never came says why by itself.
    const reason = error.details.reason;
    throw new CliError(reason === undefined ? error.message : `${String(reason)}: ${error.message}`);
  } finally {
    await transport.close();
  }
}

/**
 * Loads a module, showing its phase, the time so far and the installer's last line while it
 * installs and starts (polled every 500 ms), then the cold start's duration, or that it was
 * already running. Resolves with the module's view.
 */
async function load(name: string, o: RemoteOptions & { mode?: string }): Promise<unknown> {
  const before = (await call(o, 'GET', Rest.Paths.module(name))) as Rest.ModuleView;
  const started = Date.now();
  const view = progressView(name, started);
  view.update(before);
  let polling = true;
  const poll = async () => {
    while (polling) {
      await new Promise((r) => setTimeout(r, 500));
      const now = (await call(o, 'GET', Rest.Paths.module(name)).catch(() => undefined)) as
        | Rest.ModuleView
        | undefined;
      if (polling) view.update(now);
    }
  };
  const polled = poll();
  try {
    const after = (await call(
      o,
      'POST',
      Rest.Paths.load(name),
      o.mode ? { mode: o.mode } : {},
      900_000,
    )) as Rest.ModuleView;
    if (after.placement === 'local') view.succeed(`${name}: placed local, runs in the clients' processes`);
    else if (before.state === 'ready') view.succeed(`${name}: ready (it was running already)`);
    else view.succeed(`${name}: ready, cold start ${elapsed(started)}`);
    return after;
  } catch (error) {
    view.fail(`${name}: failed after ${elapsed(started)}`);
    throw error;
  } finally {
    polling = false;
    await polled;
  }
}

function benchmarkTable(answer: unknown): void {
  const r = answer as {
    active: boolean;
    duration_s: number;
    overall: Record<string, number>;
    modules: Record<string, Record<string, number>>;
  };
  process.stdout.write(`benchmark ${r.active ? 'running' : 'stopped'}, ${r.duration_s} s\n`);
  const row = (name: string, f: Record<string, number>) => [
    name,
    f.calls,
    f.throughput,
    f.mean_ms,
    f.p50_ms,
    f.p90_ms,
    f.p95_ms,
    f.p99_ms,
    f.errors,
  ];
  table(
    ['MODULE', 'CALLS', 'REQ/S', 'MEAN MS', 'P50', 'P90', 'P95', 'P99', 'ERRORS'],
    [...Object.entries(r.modules).map(([name, f]) => row(name, f)), row('(overall)', r.overall)],
  );
}

function trackingTable(answer: unknown): void {
  const r = answer as {
    active: boolean;
    events: Array<Record<string, string>>;
    modules: Record<string, { calls: number; mean_ms: number }>;
  };
  process.stdout.write(`tracking ${r.active ? 'on' : 'off'}\n`);
  table(
    ['AT', 'KIND', 'MODULE', 'CHANGE', 'REASON'],
    r.events.map((e) => [
      e.at,
      e.kind,
      e.module ?? '',
      e.kind === 'placement' ? `${e.from ?? ''} -> ${e.to ?? e.policy}` : e.action,
      e.reason,
    ]),
  );
  table(
    ['MODULE', 'CALLS', 'MEAN MS'],
    Object.entries(r.modules).map(([name, m]) => [name, m.calls, m.mean_ms]),
  );
}

/**
 * Columns padded to their widest cell, measured in terminal columns (string-width: wide and
 * combining characters, escape sequences), so that long or non-ASCII names keep rows aligned.
 */
export function formatTable(head: string[], rows: unknown[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => (c === undefined || c === null ? '' : String(c))))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => stringWidth(r[i] ?? ''))));
  const pad = (c: string, i: number) => c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - stringWidth(c)));
  return cells.map((r) => `${r.map(pad).join('  ').trimEnd()}\n`).join('');
}

/** Writes rows as an aligned table under a head. */
export function table(head: string[], rows: unknown[][]): void {
  process.stdout.write(formatTable(head, rows));
}

function json(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** An error the CLI reports as one line and exit code 1. */
export class CliError extends Error {}
