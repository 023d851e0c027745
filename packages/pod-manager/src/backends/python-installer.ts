/**
 * Installs a Python module for the local backend: one virtual environment per module, in the install
 * cache, keyed by the Python version, the requirements and the Python module-server's own files,
 * holding the module's requirements and the server's (grpcio); the server itself is imported from
 * its package folder (a .pth file names its src/), never built into the environment, so that no
 * install writes into that folder. Made with `uv` when it is on PATH (much faster),
 * else `python -m venv` and pip. pip installs wheels only (`--only-binary=:all:`: building a source
 * distribution runs its code) unless the module sets install_scripts, and sees none of the
 * pod-manager's secrets (its environment is the allow-list of isolation.ts).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import { clearInstallOutput, noteInstallOutput } from './install-progress.js';
import { installStaged, isInstalled, localFingerprint } from './installer.js';
import { childEnv } from './isolation.js';

/** Options of {@link installPythonModule}. */
export interface PythonInstallOptions {
  cacheDir: string;
  timeoutMs: number;
  /** The Python that makes the environments. */
  python: string;
  /** pip's --index-url; default PyPI. */
  indexUrl?: string | undefined;
}

const _MARKER = '.splice-installed';
const inFlight = new Map<string, Promise<string>>();
const run = promisify(execFile);

/** The Python module-server's package folder (its pyproject.toml and src/), found when first needed. */
export function pythonServerDir(): string {
  return dirname(fileURLToPath(import.meta.resolve('@splice-orc/python-module-server/package.json')));
}

/** The interpreter of an installed module's environment. */
export function venvPython(dir: string): string {
  return join(dir, 'venv', 'bin', 'python');
}

/** Resolves with the folder of the module's environment, making it if needed. */
export async function installPythonModule(spec: ModuleSpec, options: PythonInstallOptions): Promise<string> {
  const version = await pythonVersion(options.python);
  const dir = join(options.cacheDir, 'modules', pythonInstallKey(spec, version));
  if (isInstalled(dir)) return dir;
  let pending = inFlight.get(dir);
  if (!pending) {
    pending = installInto(spec, dir, options, version).finally(() => {
      inFlight.delete(dir);
      clearInstallOutput(spec.name);
    });
    inFlight.set(dir, pending);
  }
  return pending;
}

/** A readable folder name: the module name and a hash of everything that makes the environment. */
export function pythonInstallKey(spec: ModuleSpec, pythonVersion: string): string {
  const what = JSON.stringify([
    'python',
    pythonVersion,
    spec.package,
    [...spec.dependencies].sort(),
    // An edited local package (`file:` folder) is installed afresh, as for npm.
    [spec.package, ...spec.dependencies].map(localFingerprint),
    spec.installScripts,
    serverFingerprint(),
  ]);
  const hash = createHash('sha256').update(what).digest('hex').slice(0, 16);
  return `${spec.name.replace(/[^\w.-]+/g, '_')}-py-${hash}`;
}

async function installInto(
  spec: ModuleSpec,
  dir: string,
  options: PythonInstallOptions,
  version: string,
): Promise<string> {
  const deadline = Date.now() + options.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  // `python -m` finds its environment from the interpreter's place: the folder may move.
  return installStaged(dir, spec, async (staging) => {
    const venv = join(staging, 'venv');
    const uv = findOnPath('uv');
    if (uv) await tool(uv, ['venv', '--quiet', '--python', options.python, venv], left());
    else await tool(options.python, ['-m', 'venv', venv], left());
    const flags = [
      ...(spec.installScripts ? [] : ['--only-binary=:all:']),
      ...(options.indexUrl ? ['--index-url', options.indexUrl] : []),
    ];
    const requirements = [...serverRequirements(), spec.package, ...spec.dependencies];
    const python = join(venv, 'bin', 'python');
    // Not quiet: what it prints as it goes is the progress `modules load` shows.
    const progress = (chunk: string) => noteInstallOutput(spec.name, chunk);
    if (uv)
      await tool(
        uv,
        ['pip', 'install', '--python', python, ...flags, '--', ...requirements],
        left(),
        progress,
      );
    else
      await tool(
        python,
        [
          '-m',
          'pip',
          'install',
          '--disable-pip-version-check',
          '--no-input',
          ...flags,
          '--',
          ...requirements,
        ],
        left(),
        progress,
      );
    const [major, minor] = version.split('.');
    await writeFile(
      join(venv, 'lib', `python${major}.${minor}`, 'site-packages', 'splice_module_server.pth'),
      `${join(pythonServerDir(), 'src')}\n`,
    );
  });
}

/** Runs an install tool; a failure is INSTALL_FAILED with the tool's own words. */
function tool(
  command: string,
  args: string[],
  timeoutMs: number,
  onOutput?: (chunk: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      const text = chunk.toString();
      onOutput?.(text);
      output = (output + text).slice(-8_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.on('error', (error) =>
      reject(new ServiceError('INSTALL_FAILED', `cannot run ${command}: ${error.message}`, { cause: error })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const why = signal ? `stopped by ${signal} (start_timeout_ms?)` : `exited with ${code}`;
      const what = args.filter((a, i) => !a.startsWith('-') && args[i - 1] !== '--index-url').join(' ');
      reject(
        new ServiceError(
          'INSTALL_FAILED',
          `${command} ${what}: ${why}\n${output.trim() || '(it printed nothing)'}`,
        ),
      );
    });
  });
}

const versions = new Map<string, Promise<string>>();

/** `3.11.7` of the Python that makes environments; INSTALL_FAILED when there is none (or too old). */
function pythonVersion(python: string): Promise<string> {
  let version = versions.get(python);
  if (!version) {
    version = run(python, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], {
      timeout: 30_000,
    }).then(
      ({ stdout }) => {
        const found = stdout.trim();
        const [major = 0, minor = 0] = found.split('.').map(Number);
        if (major < 3 || (major === 3 && minor < 10)) {
          throw new ServiceError(
            'INSTALL_FAILED',
            `Python modules need Python 3.10 or newer; ${python} is ${found}`,
          );
        }
        return found;
      },
      (error: Error) => {
        throw new ServiceError(
          'INSTALL_FAILED',
          `Python modules need Python 3.10+ as server.python ('${python}'): ${error.message}`,
          { cause: error },
        );
      },
    );
    version.catch(() => versions.delete(python));
    versions.set(python, version);
  }
  return version;
}

/**
 * The server's own requirements: the `dependencies` of its pyproject.toml (one line, as written
 * there).
 */
export function serverRequirements(): string[] {
  const pyproject = readFileSync(join(pythonServerDir(), 'pyproject.toml'), 'utf8');
  const line = /^dependencies\s*=\s*(\[.*\])\s*$/m.exec(pyproject)?.[1];
  if (!line) throw new Error("the Python module-server's pyproject.toml has no one-line dependencies list");
  return JSON.parse(line) as string[];
}

/** The server's files (path and contents): an edited or moved server makes environments afresh. */
function serverFingerprint(): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      if (entry.name === '__pycache__' || entry.name.endsWith('.egg-info')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) hash.update(`${path}\0`).update(readFileSync(path));
    }
  };
  const server = pythonServerDir();
  walk(join(server, 'src'));
  hash.update(readFileSync(join(server, 'pyproject.toml')));
  return hash.digest('hex');
}

/** The first `name` on PATH (a path with a slash is taken as it is, if it exists). */
export function findOnPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}
