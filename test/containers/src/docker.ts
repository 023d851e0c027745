/**
 * Containers and volumes on the Docker engine, disposable with `await using`. Every name starts
 * with this run's prefix, so a run removes only what it made (other users share the engine).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { dockerCli } from './paths.js';

const execFileAsync = promisify(execFile);
const prefix = `splice-ctest-${randomBytes(3).toString('hex')}`;
let serial = 0;

/** A fresh name for a container or volume of this run. */
export function uniqueName(what: string): string {
  serial += 1;
  return `${prefix}-${what}-${serial}`;
}

/** Runs the Docker client; resolves with its standard output. */
export async function docker(args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await execFileAsync(dockerCli, args, {
    timeout: timeoutMs,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** How a container that ran to its end ended. */
export interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `docker run ARGS` to its end (the container is removed after). */
export function runToExit(args: string[], timeoutMs = 300_000): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(dockerCli, ['run', '--rm', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A container started in the background. */
export interface RunningContainer {
  name: string;
  /** What it printed so far, standard output and error together. */
  logs(): Promise<string>;
  /** Its state as `docker inspect` reports it (`running`, `exited`...). */
  status(): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** `docker run -d --name NAME ARGS`; removed with everything it wrote when disposed. */
export async function startContainer(name: string, args: string[]): Promise<RunningContainer> {
  await docker(['run', '-d', '--name', name, ...args]);
  return {
    name,
    logs: async () => {
      const { stdout, stderr } = await execFileAsync(dockerCli, ['logs', name], {
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout + stderr;
    },
    status: async () => (await docker(['inspect', '-f', '{{.State.Status}}', name])).trim(),
    [Symbol.asyncDispose]: async () => {
      await docker(['rm', '-f', '-v', name]).catch(() => undefined);
    },
  };
}

/** A named volume, removed when disposed. */
export async function createVolume(name: string): Promise<{ name: string } & AsyncDisposable> {
  await docker(['volume', 'create', name]);
  return {
    name,
    [Symbol.asyncDispose]: async () => {
      await docker(['volume', 'rm', '-f', name]).catch(() => undefined);
    },
  };
}

/** Calls `probe` every 250 ms until it resolves truthy; rejects with `what` and the last error after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms (${String(last ?? 'falsy')})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
