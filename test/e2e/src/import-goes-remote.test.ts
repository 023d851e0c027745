/**
 * `node --import @splice-orc/client/register app.mjs`, all real: an app file with plain imports
 * runs, as its own Node process, against a running pod-manager; the modules the pod-manager serves
 * remotely are remote proxies (named imports included), a Python one through `py:`, and every
 * other module is imported as Node does it. A pod-manager that cannot be asked at start-up stops
 * the app with one line, within the deadline, or falls back to local imports when asked to.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, http, startPodManager, type TestPodManager } from './harness.js';
import { type PackageIndex, servePackageIndex, wheelhouse } from './python-index.mjs';

/** The e2e package: `@splice-orc/client/register` resolves from here, as from an app that depends on it. */
const e2eDir = fileURLToPath(new URL('..', import.meta.url));
let pm: TestPodManager;
let index: PackageIndex;

/** An app folder with a local package `localdep` in its node_modules and the given files. */
function appDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'splice-import-app-'));
  mkdirSync(join(dir, 'node_modules/localdep'), { recursive: true });
  writeFileSync(
    join(dir, 'node_modules/localdep/package.json'),
    JSON.stringify({ name: 'localdep', type: 'module', exports: './index.js' }),
  );
  writeFileSync(join(dir, 'node_modules/localdep/index.js'), 'export const hello = (n) => "local " + n;\n');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs `node --import @splice-orc/client/register <app>` with the environment given (or, with
 * `viaNodeOptions`, the flag in NODE_OPTIONS).
 */
function runApp(
  app: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
  viaNodeOptions = false,
): Promise<Run> {
  const started = Date.now();
  const flag = ['--import', '@splice-orc/client/register'];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      viaNodeOptions ? [app] : [...flag, app],
      {
        cwd: e2eDir,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          ...(viaNodeOptions ? { NODE_OPTIONS: flag.join(' ') } : {}),
          ...env,
        },
        timeout: timeoutMs,
      },
      (error, stdout, stderr) =>
        resolve({
          code: error ? ((error as { code?: number }).code ?? null) : 0,
          stdout,
          stderr,
          ms: Date.now() - started,
        }),
    );
  });
}

beforeAll(async () => {
  index = await servePackageIndex(await wheelhouse());
  pm = await startPodManager(
    {
      calc: { package: fixture('calc') },
      greeter: { package: fixture('greeter') },
      pyfixture: { runtime: 'python', package: fixture('pyfixture') },
      // Served, but placed in the clients: imported locally, as Node does.
      localdep: { package: fixture('calc'), load_type: 'local' },
    },
    { python_index_url: index.url },
  );
  // pip may take a while on a busy machine: installed before the tests' clocks run.
  const loaded = await http(`${pm.url}/modules/pyfixture/load`, { method: 'POST', timeoutMs: 240_000 });
  if (loaded.status !== 200) throw new Error(`pyfixture: ${JSON.stringify(loaded.body)}`);
}, 300_000);

afterAll(async () => {
  await pm?.[Symbol.asyncDispose]();
  await index?.close();
});

describe('node --import @splice-orc/client/register', () => {
  it('runs an app with plain imports unchanged: served modules remote, named imports included, others local', async () => {
    const dir = appDir({
      'app.mjs': [
        "import calc, { add, Matrix, version } from 'calc';",
        "import * as calcNamespace from 'calc';",
        "import greet from 'greeter';",
        "import { hello } from 'localdep';",
        "import { basename } from 'node:path';",
        'const m = await new Matrix([[1, 2], [3, 4]]);',
        'console.log(JSON.stringify({',
        '  sum: await add(2, 3),',
        '  det: await calc.det(calc.matrix([[2, 0], [0, 3]])),',
        '  version: await version,',
        '  rows: await m.rows,',
        '  pid: await calcNamespace.pid(),',
        "  hello: await greet('ada'),",
        "  local: hello('x'),",
        "  builtin: basename('/a/b.txt'),",
        "  promise: add(1, 1) instanceof Promise || typeof add(1, 1).then === 'function',",
        '}));',
      ].join('\n'),
    });
    const run = await runApp(join(dir, 'app.mjs'), { POD_MANAGER_URL: pm.url });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout);
    expect(out).toMatchObject({
      sum: 5,
      det: 6,
      version: '1.0.0',
      rows: [
        [1, 2],
        [3, 4],
      ],
      hello: 'hello, ada',
      local: 'local x',
      builtin: 'b.txt',
      promise: true,
    });
    // The call ran in a module-server, not in the app's process.
    expect(out.pid).not.toBe(process.pid);
    const served = (await http(`${pm.url}/modules/calc`)).body;
    expect(served.calls_served).toBeGreaterThanOrEqual(5);
  });

  it('works from NODE_OPTIONS as well', async () => {
    const dir = appDir({
      'app.mjs':
        "import { add } from 'calc';\nimport { hello } from 'localdep';\nconsole.log(await add(1, 2), hello('z'));\n",
    });
    const run = await runApp(join(dir, 'app.mjs'), { POD_MANAGER_URL: pm.url }, 60_000, true);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('3 local z\n');
  });

  it("imports a Python module through py:, its names linked from the server's list", async () => {
    const dir = appDir({
      'app.mjs': [
        "import fx, { add, greet } from 'py:pyfixture';",
        "console.log(JSON.stringify({ sum: await add(40, 2), hi: await greet('ada'), v: await fx.__version__ }));",
      ].join('\n'),
    });
    const run = await runApp(join(dir, 'app.mjs'), { POD_MANAGER_URL: pm.url });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ sum: 42, hi: 'hello, ada!', v: '1.0.0' });
  });

  it('refuses a name the module does not export at link time, and py: of a module not served', async () => {
    const missing = appDir({ 'app.mjs': "import { nope } from 'calc';\nconsole.log(nope);\n" });
    const run = await runApp(join(missing, 'app.mjs'), { POD_MANAGER_URL: pm.url });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/does not provide an export named 'nope'/);
    const unknown = appDir({ 'app.mjs': "import x from 'py:scipy';\nconsole.log(x);\n" });
    const refused = await runApp(join(unknown, 'app.mjs'), { POD_MANAGER_URL: pm.url });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("cannot import 'py:scipy'");
    expect(refused.stderr).toContain("serves no module 'scipy' remotely");
  });

  it('lists exports over REST, for Node and Python modules', async () => {
    const calc = await http(`${pm.url}/modules/calc/exports`);
    expect(calc.status).toBe(200);
    expect(calc.body).toMatchObject({ name: 'calc', runtime: 'node' });
    expect(calc.body.exports).toEqual(expect.arrayContaining(['add', 'Matrix', 'version']));
    const py = await http(`${pm.url}/modules/pyfixture/exports`);
    expect(py.body).toMatchObject({ name: 'pyfixture', runtime: 'python' });
    expect(py.body.exports).toEqual(expect.arrayContaining(['Counter', 'add', 'greet']));
    expect(py.body.exports).not.toContain('_private');
    expect((await http(`${pm.url}/modules/nothere/exports`)).body.error.code).toBe('MODULE_NOT_FOUND');
  });
});

describe('a pod-manager that cannot be asked at start-up', () => {
  const app = () => appDir({ 'app.mjs': "import { hello } from 'localdep';\nconsole.log(hello('y'));\n" });
  let silent: Server;
  let silentUrl: string;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    // Accepts connections and never answers: only the deadline ends the wait.
    silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const address = silent.address();
    silentUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  it('stops the app with one clear line when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const address = closed.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    await new Promise<void>((r) => closed.close(() => r()));
    const run = await runApp(join(app(), 'app.mjs'), { POD_MANAGER_URL: url });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toEqual([
      `splice-orc: cannot ask the pod-manager at ${url} (GET /modules): ECONNREFUSED (SPLICE_IMPORT_FALLBACK=local imports every module locally instead)`,
    ]);
  });

  it('stops the app at the start-up deadline when the pod-manager does not answer, never hanging', async () => {
    const run = await runApp(join(app(), 'app.mjs'), {
      POD_MANAGER_URL: silentUrl,
      SPLICE_IMPORT_TIMEOUT_MS: '500',
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `cannot ask the pod-manager at ${silentUrl} (GET /modules): no answer within 500 ms`,
    );
    expect(run.ms).toBeLessThan(10_000);
  });

  it('refuses an answer over its size limit', async () => {
    // A "pod-manager" whose module list is 9 MiB: read up to the limit, then refused.
    const { createServer: createHttpServer } = await import('node:http');
    const huge = createHttpServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(`{"modules": [], "pad": "${'x'.repeat(9 * 1024 * 1024)}"}`);
    });
    await new Promise<void>((r) => huge.listen(0, '127.0.0.1', r));
    try {
      const address = huge.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      const run = await runApp(join(app(), 'app.mjs'), { POD_MANAGER_URL: url });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(
        `cannot ask the pod-manager at ${url} (GET /modules): its answer is larger than 8388608 bytes`,
      );
    } finally {
      huge.closeAllConnections();
      await new Promise<void>((r) => huge.close(() => r()));
    }
  });

  it('imports everything locally with a warning under SPLICE_IMPORT_FALLBACK=local', async () => {
    const run = await runApp(join(app(), 'app.mjs'), {
      POD_MANAGER_URL: silentUrl,
      SPLICE_IMPORT_TIMEOUT_MS: '300',
      SPLICE_IMPORT_FALLBACK: 'local',
    });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('local y\n');
    expect(run.stderr).toContain('importing every module locally (SPLICE_IMPORT_FALLBACK=local)');
  });

  it('says so when POD_MANAGER_URL is not set', async () => {
    const run = await runApp(join(app(), 'app.mjs'), {});
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('splice-orc: POD_MANAGER_URL is not set');
  });
});
