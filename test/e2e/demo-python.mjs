// `pnpm demo:python`: starts the pod-manager with config/config.python.json on the local backend and
// runs jac-splice-orc's numpy example and a pandas one from Node, through the client SDK.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, kw } from '@splice-orc/client';

const root = fileURLToPath(new URL('../../', import.meta.url));
const port = process.env.PORT ?? '8000';

console.log(`starting the pod-manager (config/config.python.json, local backend, port ${port})...`);
const server = spawn(
  process.execPath,
  ['packages/pod-manager/dist/cli.js', 'serve', '--config', 'config/config.python.json', '--port', port],
  {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const url = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const match = /listening on (http:\/\/\S+)/.exec(line);
    if (match) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`the pod-manager exited with code ${code}`)));
});
console.log(`pod-manager at ${url}`);

const orc = connect(url, { timeoutMs: 600_000 });
try {
  for (const name of ['numpy', 'pandas']) {
    const started = Date.now();
    console.log(`loading ${name} (the first run makes its Python environment with pip)...`);
    const status = await fetch(`${url}/modules/${name}/load`, { method: 'POST' }).then((r) => r.json());
    if (status.error) throw new Error(`${status.error.code}: ${status.error.message}`);
    console.log(`${name} ready in ${Date.now() - started} ms, served by pid ${status.pid}`);
  }

  const np = orc.module('numpy');
  // The seed's example: arr = numpy.array([1, 2, 3, 4]); numpy.sum(arr)
  const arr = await np.array([1, 2, 3, 4]); // an ndarray comes back by value, as an NDArray
  console.log('array:', arr.toArray(), `(${arr.dtype}, shape [${arr.shape}])`);
  console.log('sum:', await np.sum(arr));
  console.log('mean:', await np.mean(arr));
  console.log('reshaped 2x2:', (await np.reshape(arr, [2, 2])).toArray());
  console.log('matmul:', (await np.matmul(np.reshape(arr, [2, 2]), np.eye(2, kw({ k: 1 })))).toArray());
  console.log('inverse:', (await np.linalg.inv(np.reshape(arr, [2, 2]))).toArray());
  console.log('linspace(0, 1, num=5):', (await np.linspace(0, 1, kw({ num: 5 }))).toArray());

  const pd = orc.module('pandas');
  const rows = [
    { city: 'Heidelberg', year: 2024, sales: 10 },
    { city: 'Heidelberg', year: 2025, sales: 14 },
    { city: 'Hinxton', year: 2024, sales: 7 },
    { city: 'Hinxton', year: 2025, sales: 9 },
  ];
  const df = await pd.DataFrame.from_records(rows); // a DataFrame stays remote: a reference
  console.log('columns:', await df.columns.tolist());
  console.log('mean sales by city:', await df.groupby('city').__getitem__('sales').mean().to_dict());
  console.log('rows:', await df.__len__());
  await orc.release(df);
} finally {
  await orc.close();
  server.kill('SIGTERM');
  await once(server, 'exit');
}
