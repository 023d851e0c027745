/**
 * Test fixtures: a real pod-manager (the same app `splice-orc serve` runs) on 127.0.0.1:0 with a
 * config naming the fixture modules, disposable with `await using`.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect, type SpliceClient } from '@splice-orc/client';
import { buildApp, loadConfig } from '@splice-orc/pod-manager';
import type { FastifyInstance } from 'fastify';

/** Repository root. */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** Installs of fixture modules are shared by every test run (keyed by what is installed). */
export const cacheDir = join(repoRoot, '.splice-cache');

/** `file:` spec of a fixture module under test/fixtures. */
export const fixture = (name: string) => `file:${join(repoRoot, 'test/fixtures', name)}`;

/** The fixture modules most tests use. */
export const standardModules = {
  calc: { package: fixture('calc') },
  greeter: { package: fixture('greeter') },
};

/** A running pod-manager and a client connected to it. */
export interface TestPodManager {
  url: string;
  app: FastifyInstance;
  client: SpliceClient;
  configPath: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Writes a config file for the given modules and server settings, returns its path. */
export function writeConfig(
  modules: Record<string, object>,
  server: Record<string, unknown> = {},
  sections: Record<string, unknown> = {},
): string {
  const dir = mkdtempSync(join(tmpdir(), 'splice-e2e-'));
  const path = join(dir, 'config.json');
  const config = {
    module_config: modules,
    server: {
      cache_dir: cacheDir,
      port: 0,
      state_file: join(dir, 'state.json'),
      // The config lives in a temporary folder; REST changes may point at the fixtures.
      package_policy: { file_roots: [join(repoRoot, 'test/fixtures')] },
      ...server,
    },
    ...sections,
  };

  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** Starts a pod-manager in this process, listening on 127.0.0.1 on a free port. */
export async function startPodManager(
  modules: Record<string, object> = standardModules,
  server: Record<string, unknown> = {},
  existingConfig?: string,
): Promise<TestPodManager> {
  const configPath = existingConfig ?? writeConfig(modules, server);
  const app = await buildApp(loadConfig(configPath), {
    logger: { level: process.env.LOG_LEVEL ?? 'silent' },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const client = connect(url, { timeoutMs: 20_000 });
  return {
    url,
    app,
    client,
    configPath,
    [Symbol.asyncDispose]: async () => {
      await client.close();
      await app.close();
    },
  };
}

/** GET/POST/DELETE a JSON endpoint; resolves with status and parsed body. */
export async function http(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    headers: init.body === undefined ? init.headers : { 'content-type': 'application/json', ...init.headers },
    body:
      init.body === undefined
        ? undefined
        : typeof init.body === 'string'
          ? init.body
          : JSON.stringify(init.body),
    signal: AbortSignal.timeout(init.timeoutMs ?? 30_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body, headers: response.headers };
}

/** The built CLI, `splice-orc`. */
export const cliPath = join(repoRoot, 'packages/pod-manager/dist/cli.js');

/** Runs `splice-orc ...` (no token); resolves with its output and exit code instead of throwing. */
export async function splice(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [cliPath, ...args], {
      timeout: 60_000,
      env: { ...process.env, SPLICE_AUTH_TOKEN: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/**
 * Starts `splice-orc serve` (the built CLI) on `port` (0: any), adds the process to `running` (for
 * the test file to kill after each test), and resolves with it and its URL.
 */
export async function serveCli(
  configPath: string,
  running: ChildProcess[],
  port = 0,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--config', configPath, '--port', String(port)], {
    env: { ...process.env, SPLICE_AUTH_TOKEN: '', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  running.push(child);
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
  return { child, url };
}

/** True while a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids of live module-server processes whose parent is `parentPid`. */
export function moduleServerChildren(parentPid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.split(') ')[1]?.split(' ') ?? [];
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (Number(fields[1]) === parentPid && fields[0] !== 'Z' && cmd.includes('module-server'))
        pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
