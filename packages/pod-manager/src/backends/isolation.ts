/**
 * What a local module-server may touch. Under Node's permission model (`isolate_modules`, the
 * default) it may read only its own install folder and the module-server runtime (its package and
 * the packages that one depends on), and write nothing: not the pod-manager's config or state,
 * not other modules' installs, not `/proc` (where the pod-manager's environment is). Its
 * environment is an allow-list: nothing of the pod-manager's passes but what a Node program needs.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOnPath, pythonServerDir } from './python-installer.js';

/** Variables a module-server or npm may see of the pod-manager's environment: nothing secret. */
const PASSED_ENV = [
  'PATH',
  'HOME',
  'LANG',
  'LC_ALL',
  'TZ',
  'TMPDIR',
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'npm_config_registry',
  'npm_config_cache',
  'npm_config_userconfig',
  'LOG_LEVEL',
];

/** The allow-listed part of the pod-manager's environment. */
export function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASSED_ENV) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** The module-server's entry point and the folders of the runtime it loads. */
export const serverEntry = fileURLToPath(import.meta.resolve('@splice-orc/module-server/main'));
let runtimeFolders: string[] | undefined;

/**
 * Node's permission-model flags for a module-server serving the module installed in `installDir`:
 * read that folder and the runtime, nothing else; write nothing; start no process. `--allow-worker`
 * is given for the server's callback relay thread (INVOKE.md 3.7); a worker started with
 * `execArgv: []` would run outside the model, so the server takes the Worker class away from
 * module code once its relay has started (module-server main.ts; tested by the hostile fixture).
 */
export function isolationFlags(installDir: string): string[] {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const flag = major >= 22 ? '--permission' : '--experimental-permission';
  // The permission model's warnings: that it is experimental, and that --allow-worker needs care
  // (it does: main.ts takes the Worker class away from module code once the relay has started).
  const quiet =
    major > 20 || minor >= 11
      ? ['--disable-warning=ExperimentalWarning', '--disable-warning=SecurityWarning']
      : [];
  const readable = readableFolders(installDir);
  return [flag, '--allow-worker', ...readable.map((dir) => `--allow-fs-read=${dir}`), ...quiet];
}

/** What an isolated server may read of its own: the module's install folder and the runtime. */
function readableFolders(installDir: string): string[] {
  runtimeFolders ??= packageClosure(packageRootOf(serverEntry));
  return [realpathSync(installDir), ...runtimeFolders];
}

/**
 * How an isolated Node module-server is started: through the Landlock launcher (the Python
 * module-server's `isolation.py`, run as a script by `python`), which confines the process at the
 * kernel to reading what the permission model lets it read (and the system's libraries, name
 * resolution and TLS files), writing only /dev/null, executing only Node, and, on Linux 6.12+,
 * signalling only inside its domain, then executes Node with the permission model's flags. A
 * thread that escapes the permission model (Node 20 does not carry it into workers started with
 * `execArgv: []`) is still held by the kernel, and the server cannot signal the pod-manager (SIGUSR1
 * would open its inspector) or other servers. Without `python` on PATH, undefined: the server then
 * runs under the permission model alone (the caller logs that). Where the kernel has no Landlock,
 * the launcher says so on the server's stderr and runs it without (`--best-effort`).
 */
export function landlockLaunch(
  python: string,
  installDir: string,
  nodeArgs: string[],
): { command: string; args: string[] } | undefined {
  const interpreter = findOnPath(python);
  if (!interpreter) return undefined;
  const node = realpathSync(process.execPath);
  return {
    command: interpreter,
    args: [
      // -I: no user site, no PYTHON* variables, no current folder on the path; -S: no site module.
      '-I',
      '-S',
      launcherScript(),
      '--best-effort',
      ...readableFolders(installDir).flatMap((dir) => ['--read', dir]),
      '--',
      node,
      ...nodeArgs,
    ],
  };
}

/** The Python module-server's Landlock module, a script that needs only the standard library. */
function launcherScript(): string {
  return join(pythonServerDir(), 'src', 'splice_module_server', 'isolation.py');
}

/** The folder of the package.json that owns `file`. */
function packageRootOf(file: string): string {
  let dir = dirname(realpathSync(file));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${file}`);
    dir = parent;
  }
  return dir;
}

/**
 * The folders of a package and of everything it depends on, found as Node finds them
 * (node_modules of each enclosing folder), each as the path Node looks at and, where that is a
 * symlink (pnpm), as its real path too: Node's loader reads both. A pnpm, npm or `pnpm deploy`
 * layout all work.
 */
export function packageClosure(root: string): string[] {
  const seen = new Set<string>();
  const paths = new Set<string>();
  const queue = [realpathSync(root)];
  while (queue.length > 0) {
    const dir = queue.pop()!;
    if (seen.has(dir)) continue;
    seen.add(dir);
    paths.add(dir);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    const names = Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies });
    for (const name of names) {
      const found = findPackage(dir, name);
      if (!found) continue;
      paths.add(found);
      queue.push(realpathSync(found));
    }
  }
  return [...paths].sort();
}

/** Where Node finds package `name` from folder `from`, as the path it looks at. */
function findPackage(from: string, name: string): string | undefined {
  const { root } = parse(from);
  for (let dir = from; ; dir = dirname(dir)) {
    if (basename(dir) !== 'node_modules') {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
    }
    if (dir === root) return undefined;
  }
}
