/**
 * A Python module pod as the Kubernetes backend writes it, from the Python image (the Dockerfile's
 * `python` target): the init container installs the fixture test/fixtures/pyfixture with pip from
 * a package index on loopback (server.python_index_url, as a cluster's mirror would be), into a new
 * named volume; the server serves it from there, read-only, to grpc-health-probe and a gRPC client.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createVolume, runToExit, uniqueName } from './docker.js';
import { callModule, serveModulePod } from './grpc.js';
import { modulePod, PYTHON_IMAGE } from './manifests.js';
import { fixturesDir } from './paths.js';
import { dockerRunArgs } from './pod-spec.js';
import { freePort } from './ports.js';

/**
 * A pure-Python wheel of the fixture, made with the image's own Python (only zipfile: nothing is
 * downloaded, no build backend runs).
 */
async function fixtureWheel(): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), 'splice-ctest-wheel-'));
  chmodSync(out, 0o777);
  onTestFinished(() => rmSync(out, { recursive: true, force: true }));
  const script = `
import base64, hashlib, zipfile
info = 'splice_pyfixture-1.0.0.dist-info'
files = {
    'pyfixture.py': open('/src/pyfixture.py', 'rb').read(),
    info + '/METADATA': b'Metadata-Version: 2.1\\nName: splice-pyfixture\\nVersion: 1.0.0\\n',
    info + '/WHEEL': b'Wheel-Version: 1.0\\nGenerator: splice-orc-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
}
digest = lambda b: 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()
record = ''.join(f'{p},{digest(b)},{len(b)}\\n' for p, b in files.items()) + info + '/RECORD,,\\n'
with zipfile.ZipFile('/out/splice_pyfixture-1.0.0-py3-none-any.whl', 'w') as wheel:
    for path, data in files.items():
        wheel.writestr(path, data)
    wheel.writestr(info + '/RECORD', record)
`;
  const made = await runToExit([
    '--network',
    'none',
    '--user',
    '1000:1000',
    '-v',
    `${join(fixturesDir, 'pyfixture')}:/src:ro`,
    '-v',
    `${out}:/out`,
    '--entrypoint',
    'python',
    PYTHON_IMAGE,
    '-c',
    script,
  ]);
  if (made.code !== 0) throw new Error(`making the wheel failed: ${made.stderr}`);
  return out;
}

/** A PEP 503 simple index of the wheels in `dir` on a free loopback port. */
async function serveIndex(dir: string): Promise<{ url: string } & AsyncDisposable> {
  const wheels = readdirSync(dir).filter((f) => f.endsWith('.whl'));
  const server: Server = createServer((request, response) => {
    const wheel = wheels.find((w) => request.url === `/files/${w}`);
    if (request.url === '/simple/splice-pyfixture/') {
      const links = wheels.map((w) => {
        const sha = createHash('sha256')
          .update(readFileSync(join(dir, w)))
          .digest('hex');
        return `<a href="/files/${w}#sha256=${sha}">${w}</a>`;
      });
      response
        .writeHead(200, { 'content-type': 'text/html' })
        .end(`<html><body>${links.join('\n')}</body></html>`);
    } else if (wheel) {
      response
        .writeHead(200, { 'content-type': 'application/octet-stream' })
        .end(readFileSync(join(dir, wheel)));
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('a Python module pod from the Python image', () => {
  it('installs its module with pip into a new named volume, then serves it to grpc-health-probe and a gRPC client', async () => {
    await using index = await serveIndex(await fixtureWheel());
    const pod = modulePod('pyfixture', { package: 'splice-pyfixture', runtime: 'python' }, index.url);
    await using volume = await createVolume(uniqueName('modules'));
    const podName = uniqueName('pyfixture');
    const run = { podName, volumes: { modules: volume.name } };

    const install = await runToExit(dockerRunArgs(pod.spec, pod.container('install'), run));
    expect(install.code, install.stdout + install.stderr).toBe(0);
    expect(install.stdout).toContain('"msg": "installed", "target": "/modules/install"');

    const port = await freePort();
    const served = await serveModulePod(pod, run, port);
    await using _server = served.server;
    const { health } = served;
    expect(health.output).toMatch(/status: SERVING/);
    expect(await callModule(port, 'add', [1, 2])).toMatchObject({ ok: true, value: 3 });
    expect(await callModule(port, 'greet', ['pod'])).toMatchObject({ ok: true, value: 'hello, pod!' });
  });
});
