/**
 * Installs a module and its dependencies with npm into a cache directory keyed by what is
 * installed (the analog of jac-splice-orc's startup pip install). An install is done once per key:
 * concurrent requests share it, and later starts find it in the cache.
 */
import { type SpawnOptions, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { type Dirent, existsSync, readdirSync, statSync } from 'node:fs';

import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeImporter } from '@splice-orc/runtime';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import { clearInstallOutput, noteInstallOutput } from './install-progress.js';
import { childEnv } from './isolation.js';

/** Options of {@link installModule}. */
export interface InstallOptions {
  cacheDir: string;
  timeoutMs: number;
}

const MARKER = '.splice-installed';
const inFlight = new Map<string, Promise<string>>();

/** Resolves with the directory whose node_modules holds the module, installing it if needed. */
export function installModule(spec: ModuleSpec, options: InstallOptions): Promise<string> {
  const dir = join(options.cacheDir, 'modules', installKey(spec));
  if (isInstalled(dir)) return Promise.resolve(dir);
  let pending = inFlight.get(dir);
  if (!pending) {
    pending = installModuleInto(spec, dir, options.timeoutMs, (chunk) =>
      noteInstallOutput(spec.name, chunk),
    ).finally(() => {
      inFlight.delete(dir);
      clearInstallOutput(spec.name);
    });
    inFlight.set(dir, pending);
  }
  return pending;
}

/** A readable, collision-free folder name: the module name and a hash of everything installed. */
export function installKey(spec: ModuleSpec): string {
  const specs = [spec.package, ...[...spec.dependencies].sort()];
  const what = JSON.stringify([
    specs,
    specs.map(localFingerprint),
    process.versions.node.split('.')[0],
    // An install whose scripts ran is another install.
    ...(spec.installScripts ? ['scripts'] : []),
  ]);
  const hash = createHash('sha256').update(what).digest('hex').slice(0, 16);
  return `${spec.name.replace(/[^\w.-]+/g, '_')}-${hash}`;
}

/**
 * Installs the module and its dependencies into `dir` (staged beside it, then renamed), and makes
 * it importable from there. The init container of a module pod runs this into its volume.
 *
 * npm runs with `--ignore-scripts` unless the module opts in (`install_scripts`): a package's
 * `postinstall` would otherwise run as the pod-manager's user. Either way npm sees none of the
 * pod-manager's secrets: its environment is an allow-list (isolation.ts).
 */
export async function installModuleInto(
  spec: Pick<ModuleSpec, 'package' | 'dependencies' | 'installScripts'>,
  dir: string,
  timeoutMs: number,
  /** Gets npm's output as it comes (progress). */
  onOutput?: (chunk: string) => void,
): Promise<string> {
  return installStaged(dir, spec, async (staging) => {
    await writeFile(join(staging, 'package.json'), '{ "name": "splice-orc-install", "private": true }\n');
    // --install-links copies `file:` packages like registry ones instead of linking them, so the
    // module resolves its `dependency` list from this folder, as it would in a container.
    // --loglevel=http: a line per fetch, which `modules load` shows as progress (left out of errors).
    const flags = ['--no-audit', '--no-fund', '--omit=dev', '--install-links', '--loglevel=http'];
    if (!spec.installScripts) flags.push('--ignore-scripts');
    const specs = [spec.package, ...spec.dependencies];
    await runNpm(
      ['install', ...flags, '--', ...specs],
      { cwd: staging, env: childEnv() },
      timeoutMs,
      onOutput,
    );
    writeImporter(staging);
  });
}

/** Whether `dir` holds a finished install. */
export function isInstalled(dir: string): boolean {
  return existsSync(join(dir, MARKER));
}

/**
 * Fills a staging folder beside `dir` (`fill`), marks it as a finished install of `what` and
 * renames it to `dir`. Another process that finished first wins: its install is as good as ours.
 * The staging folder is gone afterwards, whatever happened.
 */
export async function installStaged(
  dir: string,
  what: Pick<ModuleSpec, 'package' | 'dependencies'>,
  fill: (staging: string) => Promise<void>,
): Promise<string> {
  const staging = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await mkdir(staging, { recursive: true });
  try {
    await fill(staging);
    await writeFile(
      join(staging, MARKER),
      `${JSON.stringify({ package: what.package, dependencies: what.dependencies })}\n`,
    );
    await rename(staging, dir).catch(async (error: NodeJS.ErrnoException) => {
      if (!isInstalled(dir)) throw error;
    });
    return dir;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * For a `file:` spec, what its folder holds (names, sizes, modification times), so that an edited
 * local module is installed afresh; for any other spec, nothing (the spec pins it).
 */
export function localFingerprint(spec: string): string {
  if (!spec.startsWith('file:')) return '';
  const hash = createHash('sha256');
  const walk = (dir: string, depth: number) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name === 'node_modules' || entry.name === '.git') continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory() && depth < 8) walk(path, depth + 1);
      else if (entry.isFile()) {
        const { size, mtimeMs } = statSync(path);
        hash.update(`${path}\0${size}\0${mtimeMs}\n`);
      }
    }
  };
  walk(spec.slice('file:'.length), 0);
  return hash.digest('hex');
}

/** npm that came with this Node, so the install does not depend on PATH. */
function npmCommand(): string {
  const beside = join(dirname(process.execPath), 'npm');
  return existsSync(beside) ? beside : 'npm';
}

function runNpm(
  args: string[],
  options: SpawnOptions,
  timeoutMs: number,
  onOutput?: (chunk: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(npmCommand(), args, {
      ...options,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      const text = chunk.toString();
      onOutput?.(text);
      // The fetch log is progress, not the reason of a failure.
      output = (output + text.replace(/^npm http .*\n?/gm, '')).slice(-8_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.on('error', (error) =>
      reject(new ServiceError('INSTALL_FAILED', `cannot run npm: ${error.message}`, { cause: error })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const why = signal
        ? `npm was stopped by ${signal} (install_timeout ${timeoutMs} ms?)`
        : `npm exited with ${code}`;
      const npmSays = output.trim() || '(npm printed nothing)';
      reject(
        new ServiceError(
          'INSTALL_FAILED',
          `npm install ${args.filter((a) => a !== 'install' && !a.startsWith('--')).join(' ')} failed: ${why}\n${npmSays}`,
        ),
      );
    });
  });
}
