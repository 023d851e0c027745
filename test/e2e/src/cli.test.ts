import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify, stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { cliPath, fixture, splice, startPodManager } from './harness.js';
import { type PackageIndex, servePackageIndex, wheelhouse } from './python-index.mjs';

const run = promisify(execFile);

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

describe('splice-orc modules load, showing what it does', () => {
  /** A pod-manager with a cache of its own: its modules install afresh. */
  const freshPodManager = (modules: Record<string, object>, server: Record<string, unknown> = {}) =>
    startPodManager(modules, { cache_dir: mkdtempSync(join(tmpdir(), 'splice-cli-cache-')), ...server });

  it('writes plain lines when piped: phase and elapsed time, then the cold start time', async () => {
    await using pm = await freshPodManager({ 'slow-start': { package: fixture('slow-start') } });
    const load = await splice('modules', 'load', 'slow-start', '--url', pm.url);
    expect(load.code).toBe(0);
    expect(JSON.parse(load.stdout)).toMatchObject({ name: 'slow-start', state: 'ready' });
    const lines = load.stderr.trim().split('\n');
    expect(lines[0]).toBe('slow-start: absent (0.0 s)');
    // The fixture's import takes 2 s: the starting phase is seen, with its time.
    expect(lines).toContainEqual(expect.stringMatching(/^slow-start: starting \(\d+\.\d s\)$/));
    const done = lines.at(-1)?.match(/^slow-start: ready, cold start (\d+\.\d) s$/);
    expect(Number(done?.[1])).toBeGreaterThanOrEqual(2);
    expect(load.stderr).not.toContain('\r');
    expect(load.stderr).not.toContain('\u001b');
    const again = await splice('modules', 'load', 'slow-start', '--url', pm.url);
    expect(again.stderr.trim().split('\n').at(-1)).toBe('slow-start: ready (it was running already)');
  }, 120_000);

  /** `modules load slow-start` on a terminal (script(1) gives it one); what the terminal received. */
  async function loadOnATerminal(env: NodeJS.ProcessEnv): Promise<{ stdout: string; seen: string }> {
    await using pm = await freshPodManager({ 'slow-start': { package: fixture('slow-start') } });
    const { stdout } = await run(
      'script',
      [
        '-qec',
        `stty cols 120 rows 40; ${process.execPath} ${cliPath} modules load slow-start --url ${pm.url}`,
        '/dev/null',
      ],
      { timeout: 60_000, env: { ...env, SPLICE_AUTH_TOKEN: '', TERM: 'xterm' } },
    );
    // What the terminal received, shown when an assertion fails (the escape codes made visible).
    return { stdout, seen: `terminal output: ${JSON.stringify(stdout.slice(-3000))}` };
  }

  /** This process's environment without `CI` (which CI machines set, and which turns the spinner off). */
  function withoutCI(): NodeJS.ProcessEnv {
    const { CI: _ci, ...env } = process.env;
    return env;
  }

  it('draws a spinner on a terminal and ends with the cold start time', async () => {
    const { stdout, seen } = await loadOnATerminal(withoutCI());
    // ora hides the cursor and redraws one line in place: frames of its spinner, each with the
    // phase and the time so far. (Which phases a frame catches depends on the machine's speed; the
    // piped test above checks that the starting phase is reported.)
    expect(stdout, seen).toContain('\u001b[?25l');
    const frames = stdout.match(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]\S* slow-start: [a-z]+ \(\d+\.\d s\)/g) ?? [];
    expect(new Set(frames).size, seen).toBeGreaterThan(1);
    expect(stripVTControlCharacters(stdout), seen).toMatch(/✔ slow-start: ready, cold start \d+\.\d s/);
  }, 120_000);

  it('writes plain lines on a terminal under CI, every phase included', async () => {
    const { stdout, seen } = await loadOnATerminal({ ...withoutCI(), CI: 'true' });
    expect(stdout, seen).not.toContain('\u001b[?25l');
    const lines = stdout.split('\r\n');
    expect(lines, seen).toContainEqual(expect.stringMatching(/^slow-start: starting \(\d+\.\d s\)$/));
    expect(lines, seen).toContainEqual(expect.stringMatching(/^slow-start: ready, cold start \d+\.\d s$/));
  }, 120_000);

  it("shows the installer's last line while a Python module installs", async () => {
    let index: PackageIndex | undefined;
    try {
      index = await servePackageIndex(await wheelhouse());
      await using pm = await freshPodManager(
        { pyfixture: { runtime: 'python', package: fixture('pyfixture') } },
        { python_index_url: index.url },
      );
      const load = await run(process.execPath, [cliPath, 'modules', 'load', 'pyfixture', '--url', pm.url], {
        timeout: 240_000,
        env: { ...process.env, SPLICE_AUTH_TOKEN: '' },
      });
      const installing = load.stderr.split('\n').filter((l) => l.startsWith('pyfixture: installing ('));
      // pip (or uv) said something while it installed, and that is what was shown.
      expect(installing.some((l) => /^pyfixture: installing \(\d+\.\d s\): \S/.test(l))).toBe(true);
      expect(load.stderr).toMatch(/pyfixture: ready, cold start \d+\.\d s/);
    } finally {
      await index?.close();
    }
  }, 300_000);
});
