/**
 * Python packages for the tests without reaching PyPI from a test: the wheels of
 * python-wheels.txt are downloaded once per requirements file and Python version (like pnpm's
 * store: a setup step) into ~/.cache/splice-orc-tools, and each test run serves them on loopback as
 * a PEP 503 simple index, which the pod-manager's pip is pointed at (server.python_index_url).
 * Needs python3 (3.10+) and, for the first download, PyPI; a test that needs it fails with the
 * reason when either is missing, it is never skipped.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer } from 'node:http';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// Plain JavaScript (typed in python-index.d.mts): the benchmarks, which run without a build, use it too.
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);
const requirements = join(repoRoot, 'test/e2e/python-wheels.txt');
const python = process.env.PYTHON || 'python3';

/** The folder of downloaded wheels, filled if needed. */
/** @returns {Promise<string>} */
export async function wheelhouse() {
  const { stdout: version } = await run(python, [
    '-c',
    'import sys, platform; print(sys.version, platform.machine())',
  ]);
  const hash = createHash('sha256')
    .update(readFileSync(requirements))
    .update(version)
    .digest('hex')
    .slice(0, 12);
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const dir = join(cache, 'splice-orc-tools', `wheels-${hash}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const building = `${dir}.building-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  await run(
    python,
    [
      '-m',
      'pip',
      'download',
      '--quiet',
      '--disable-pip-version-check',
      '--only-binary=:all:',
      '--dest',
      building,
      '-r',
      requirements,
    ],
    { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
  );
  await run('touch', [join(building, '.complete')]);
  try {
    renameSync(building, dir);
  } catch {
    rmSync(building, { recursive: true, force: true }); // another run finished first
  }
  return dir;
}

/** PEP 503's normalized project name. */
/** @param {string} name */
const normalize = (name) => name.replace(/[-_.]+/g, '-').toLowerCase();

/** Serves the wheels of `dir` as a simple index on a free loopback port. */
/**
 * @param {string} dir
 * @returns {Promise<import('./python-index.d.mts').PackageIndex>}
 */
export async function servePackageIndex(dir) {
  /** @type {Map<string, string[]>} */
  const projects = new Map();
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.whl')) continue;
    const project = normalize(file.split('-')[0] ?? file);
    projects.set(project, [...(projects.get(project) ?? []), file]);
  }
  /** @type {Map<string, string>} */
  const digests = new Map();
  /** @param {string} file */
  const digest = (file) => {
    let d = digests.get(file);
    if (!d) {
      d = createHash('sha256')
        .update(readFileSync(join(dir, file)))
        .digest('hex');
      digests.set(file, d);
    }
    return d;
  };
  /** @param {string[]} links */
  const page = (links) => `<!DOCTYPE html><html><body>\n${links.join('\n')}\n</body></html>\n`;
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname);
    /** @param {number} status @param {string} body */
    const send = (status, body) => {
      response.writeHead(status, { 'content-type': 'text/html' });
      response.end(body);
    };
    if (path === '/simple/') {
      return send(200, page([...projects.keys()].map((p) => `<a href="/simple/${p}/">${p}</a>`)));
    }
    const project = /^\/simple\/([^/]+)\/$/.exec(path)?.[1];
    if (project !== undefined) {
      const files = projects.get(normalize(project));
      if (!files) return send(404, 'not found');
      return send(200, page(files.map((f) => `<a href="/files/${f}#sha256=${digest(f)}">${f}</a>`)));
    }
    const file = /^\/files\/([^/]+\.whl)$/.exec(path)?.[1];
    if (file && existsSync(join(dir, basename(file)))) {
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': statSync(join(dir, file)).size,
      });
      createReadStream(join(dir, file)).pipe(response);
      return;
    }
    send(404, 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve(undefined));
      }),
  };
}
