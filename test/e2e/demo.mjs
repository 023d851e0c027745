// `pnpm demo`: starts the pod-manager with config/config.json on the local backend and runs the
// jac-splice-orc numpy example, rewritten for mathjs, through the client SDK.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect } from '@splice-orc/client';

const root = fileURLToPath(new URL('../../', import.meta.url));
const port = process.env.PORT ?? '8000';

console.log(`starting the pod-manager (config/config.json, local backend, port ${port})...`);
const server = spawn(process.execPath, ['packages/pod-manager/dist/cli.js', 'serve', '--port', port], {
  cwd: root,
  env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const match = /listening on (http:\/\/\S+)/.exec(line);
    if (match) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`the pod-manager exited with code ${code}`)));
});
console.log(`pod-manager at ${url}`);

const orc = connect(url, { timeoutMs: 300_000 });
try {
  const started = Date.now();
  console.log('loading mathjs (the first run installs it with npm)...');
  const status = await fetch(`${url}/modules/mathjs/load`, { method: 'POST' }).then((r) => r.json());
  if (status.error) throw new Error(`${status.error.code}: ${status.error.message}`);
  console.log(
    `mathjs ready in ${Date.now() - started} ms, served by pid ${status.pid} at ${status.endpoint}`,
  );

  const math = orc.module('mathjs');
  const arr = [1, 2, 3, 4, 5];
  console.log('array:', arr);
  console.log('mean:', await math.mean(arr));
  console.log('std:', await math.std(arr));
  console.log('sum of squares:', await math.sum(math.dotPow(arr, 2)));

  const m = await math.matrix([
    [1, 2],
    [3, 4],
  ]); // a remote reference: the Matrix stays in the module-server
  console.log('matrix size:', await m.size());
  console.log('det:', await math.det(m));
  console.log('inverse:', await math.inv(m).toArray());
  console.log('pi:', await math.pi);
  console.log('5 cm in inch:', await math.unit(5, 'cm').toNumber('inch'));
  await orc.release(m);
  const after = await fetch(`${url}/modules/mathjs`).then((r) => r.json());
  console.log(
    `calls served: ${after.calls_served}; objects still held for clients: ${after.server?.objects}`,
  );
} finally {
  await orc.close();
  server.kill('SIGTERM');
  await once(server, 'exit');
  console.log('pod-manager stopped (and its module-servers with it)');
}
