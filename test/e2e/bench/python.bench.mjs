// `pnpm bench` (second part): a Python module against a Node one through the same pod-manager and
// client, measured in the same run, so the figures are ratios against a baseline of this machine:
//   (n) calc.add(1, 2) on the Node module-server, (y) pyfixture.add(1, 2) on the Python one:
//       p50/p99 sequential and calls/s with 64 in flight;
//   a 1M-element float64 array (8 MB) sent and returned: calc.echo(Float64Array) on Node against
//       numpy.asarray(NDArray) on Python, in MB/s both ways.
// The pod-manager runs as its own process; pip installs the Python modules from a loopback index of
// real wheels (src/python-index.mjs), as the tests do.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, NDArray } from '@splice-orc/client';
import { servePackageIndex, wheelhouse } from '../src/python-index.mjs';
import { concurrent, sequential } from './measure.mjs';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 3000);
const CONCURRENT_MS = Number(process.env.BENCH_CONCURRENT_MS ?? 3000);
const IN_FLIGHT = 64;
const rate = async (call) => (await concurrent(call, IN_FLIGHT, CONCURRENT_MS)).rps;
const ARRAY_ROUNDS = Number(process.env.BENCH_ARRAY_ROUNDS ?? 20);

const index = await servePackageIndex(await wheelhouse());
const dir = mkdtempSync(join(tmpdir(), 'splice-bench-py-'));
const configPath = join(dir, 'config.json');
writeFileSync(
  configPath,
  JSON.stringify({
    module_config: {
      calc: { package: `file:${join(root, 'test/fixtures/calc')}` },
      pyfixture: { runtime: 'python', package: join(root, 'test/fixtures/pyfixture') },
      numpy: { runtime: 'python', package: 'numpy>=2,<3' },
    },
    server: {
      cache_dir: join(root, '.splice-cache'),
      port: 0,
      python_index_url: index.url,
      max_payload_bytes: 64 * 1024 * 1024,
      package_policy: { file_roots: [join(root, 'test/fixtures')] },
    },
  }),
);
const server = spawn(
  process.execPath,
  [join(root, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath],
  { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const match = /listening on (http:\/\/\S+)/.exec(line);
    if (match) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`pod-manager exited with ${code}`)));
});

try {
  for (const name of ['calc', 'pyfixture', 'numpy']) {
    const loaded = await fetch(`${url}/modules/${name}/load`, { method: 'POST' }).then((r) => r.json());
    if (loaded.error) throw new Error(`${name}: ${loaded.error.message}`);
  }
  const orc = connect(url, { timeoutMs: 60_000 });
  const calc = orc.module('calc');
  const fx = orc.module('pyfixture');
  const np = orc.module('numpy');
  const nodeAdd = async () => {
    if ((await calc.add(1, 2)) !== 3) throw new Error('wrong answer');
  };
  const pythonAdd = async () => {
    if ((await fx.add(1, 2)) !== 3) throw new Error('wrong answer');
  };
  const n = { ...(await sequential(nodeAdd, SEQUENTIAL)), rps: await rate(nodeAdd) };
  const y = { ...(await sequential(pythonAdd, SEQUENTIAL)), rps: await rate(pythonAdd) };

  const elements = 1_000_000;
  const data = Float64Array.from({ length: elements }, (_, i) => i * 0.5);
  const nodeArray = async () => {
    const back = await calc.echo(data);
    if (back.length !== elements || back[elements - 1] !== data[elements - 1])
      throw new Error('wrong answer');
  };
  const array = new NDArray('float64', [elements], data);
  const pythonArray = async () => {
    const back = await np.asarray(array);
    if (back.size !== elements || back.data[elements - 1] !== data[elements - 1])
      throw new Error('wrong answer');
  };
  const megabytes = (2 * data.byteLength) / 1e6; // there and back
  const na = await sequential(nodeArray, ARRAY_ROUNDS);
  const ya = await sequential(pythonArray, ARRAY_ROUNDS);

  const f = (ms) => ms.toFixed(3).padStart(8);
  const r = (rps) => Math.round(rps).toString().padStart(9);
  const x = (v) => v.toFixed(2).padStart(8);
  console.log(`\nPython against Node module-servers, add(1, 2) through client -> pod-manager -> server`);
  console.log(`sequential ${SEQUENTIAL} calls, then ${IN_FLIGHT} in flight for ${CONCURRENT_MS} ms`);
  console.log('path                                    p50 ms   p99 ms   calls/s');
  console.log(`(n) Node module-server                  ${f(n.p50)} ${f(n.p99)} ${r(n.rps)}`);
  console.log(`(y) Python module-server                ${f(y.p50)} ${f(y.p99)} ${r(y.rps)}`);
  console.log(
    `ratio y/n                               ${x(y.p50 / n.p50)} ${x(y.p99 / n.p99)} ${x(y.rps / n.rps)}`,
  );
  console.log(`\n1M float64 (8 MB) there and back, ${ARRAY_ROUNDS} rounds                p50 ms     MB/s`);
  console.log(
    `Node: calc.echo(Float64Array)                             ${f(na.p50)} ${r(megabytes / (na.p50 / 1000))}`,
  );
  console.log(
    `Python: numpy.asarray(NDArray)                            ${f(ya.p50)} ${r(megabytes / (ya.p50 / 1000))}`,
  );
  console.log(`ratio Python/Node (time)                                  ${x(ya.p50 / na.p50)}`);
  await orc.close();
} finally {
  server.kill('SIGTERM');
  await once(server, 'exit');
  await index.close();
}
