// `pnpm bench`: latency and throughput of one small invocation (calc.add(1, 2)), measured in the
// same run for
//   (a) a raw @grpc/grpc-js Invoke straight to a module-server (the floor: a module-server process
//       of its own, started here with a secret this script knows), and
//   (h) the same call over the pod-manager's lean HTTP/2 invoke channel, and
//   (b) the client SDK through the pod-manager (client -> HTTP -> pod-manager -> gRPC -> server),
// and the ratio b/a; then dependent calls in separate round trips against one pipelined program,
// and the same call placed local. The pod-manager runs as its own process, as in production.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect } from '@splice-orc/client';
import { createInvokeChannel, createModuleClient, decode, encode } from '@splice-orc/protocol';
import { concurrent, sequential } from './measure.mjs';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 3000);
const CONCURRENT_MS = Number(process.env.BENCH_CONCURRENT_MS ?? 3000);
const IN_FLIGHT = 64;
const seq = (call) => sequential(call, SEQUENTIAL);
const rate = async (call) => (await concurrent(call, IN_FLIGHT, CONCURRENT_MS)).rps;

const dir = mkdtempSync(join(tmpdir(), 'splice-bench-'));
const configPath = join(dir, 'config.json');
writeFileSync(
  configPath,
  JSON.stringify({
    module_config: {
      calc: { package: `file:${join(root, 'test/fixtures/calc')}` },
      // The same module placed local: the client runs it in its own process.
      calc_local: { package: `file:${join(root, 'test/fixtures/calc')}`, load_type: 'local' },
    },
    server: { cache_dir: join(root, '.splice-cache'), port: 0 },
  }),
);
const server = spawn(
  process.execPath,
  [join(root, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath],
  {
    env: { ...process.env, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const url = await new Promise((resolve, reject) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const match = /listening on (http:\/\/\S+)/.exec(line);
    if (match) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`pod-manager exited with ${code}`)));
});

/** A module-server process serving the calc fixture with a known secret; resolves with its endpoint. */
async function standaloneServer(secret) {
  const child = spawn(
    process.execPath,
    ['--disallow-code-generation-from-strings', join(root, 'packages/module-server/dist/main.js')],
    {
      env: {
        PATH: process.env.PATH,
        MODULE_NAME: join(root, 'test/fixtures/calc/index.js'),
        PORT: '0',
        SPLICE_SERVER_SECRET: secret,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /"port":(\d+)/.exec(line);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`module-server exited with ${code}`)));
  });
  return { child, endpoint: `127.0.0.1:${port}` };
}

const secret = 'bench-secret-0123456789';
const standalone = await standaloneServer(secret);
try {
  await fetch(`${url}/modules/calc/load`, { method: 'POST' }).then((r) => r.json());
  const raw = createModuleClient(standalone.endpoint, { secret });
  const program = {
    v: 1,
    session: 'bench',
    ops: [{ op: 'call', target: null, path: ['add'], args: [1, 2] }],
  };
  const rawCall = async () => {
    const res = decode(await raw.invoke(encode(program), { timeoutMs: 10_000 }));
    if (res.value !== 3) throw new Error('wrong answer');
  };
  const channel = createInvokeChannel(standalone.endpoint, { secret });
  const channelCall = async () => {
    const res = decode((await channel.invoke(encode(program), { timeoutMs: 10_000 })).payload);
    if (res.value !== 3) throw new Error('wrong answer');
  };
  const orc = connect(url);
  const calc = orc.module('calc');
  const clientCall = async () => {
    if ((await calc.add(1, 2)) !== 3) throw new Error('wrong answer');
  };

  const a = { ...(await seq(rawCall)), rps: await rate(rawCall) };
  const h = { ...(await seq(channelCall)), rps: await rate(channelCall) };
  const b = { ...(await seq(clientCall)), rps: await rate(clientCall) };
  const f = (x) => x.toFixed(3).padStart(8);
  const r = (x) => x.toFixed(0).padStart(8);
  console.log(
    `\ninvocation of calc.add(1, 2); ${SEQUENTIAL} sequential calls, then ${IN_FLIGHT} in flight for ${CONCURRENT_MS} ms`,
  );
  console.log('path                                    p50 ms   p99 ms   calls/s');
  console.log(`(a) raw grpc-js Invoke -> module-server ${f(a.p50)} ${f(a.p99)} ${r(a.rps)}`);
  console.log(`(h) http2 invoke channel -> server      ${f(h.p50)} ${f(h.p99)} ${r(h.rps)}`);
  console.log(`(b) client -> pod-manager -> server     ${f(b.p50)} ${f(b.p99)} ${r(b.rps)}`);
  console.log(
    `ratio b/a                               ${(b.p50 / a.p50).toFixed(2).padStart(8)} ${(b.p99 / a.p99).toFixed(2).padStart(8)} ${(b.rps / a.rps).toFixed(2).padStart(8)}`,
  );

  // Three dependent operations: separate round trips (and a release of what they made), or one program.
  const x = [
    [2, 0],
    [0, 3],
  ];
  const threeTrips = async () => {
    const m = await calc.matrix(x);
    const scaled = await m.scale(2);
    if ((await calc.det(scaled)) !== 24) throw new Error('wrong answer');
    await orc.release(m, scaled);
  };
  const pipelined = async () => {
    if ((await calc.det(calc.matrix(x).scale(2))) !== 24) throw new Error('wrong answer');
  };
  const local = connect(url, { importModule: () => import(join(root, 'test/fixtures/calc/index.js')) });
  const calcLocal = local.module('calc_local');
  const localCall = async () => {
    if ((await calcLocal.add(1, 2)) !== 3) throw new Error('wrong answer');
  };
  const t = await seq(threeTrips);
  const p = await seq(pipelined);
  const l = { ...(await seq(localCall)), rps: await rate(localCall) };
  console.log(`\ndet(matrix(x).scale(2)): separate round trips vs one pipelined program, sequential`);
  console.log(`(t) 4 round trips (3 calls + release)   ${f(t.p50)} ${f(t.p99)}`);
  console.log(`(p) one pipelined program               ${f(p.p50)} ${f(p.p99)}`);
  console.log(
    `ratio p/t                               ${(p.p50 / t.p50).toFixed(2).padStart(8)} ${(p.p99 / t.p99).toFixed(2).padStart(8)}`,
  );
  console.log(`\ncalc.add(1, 2) placed local (same proxy API, in-process runtime)`);
  console.log(`(l) local placement                     ${f(l.p50)} ${f(l.p99)} ${r(l.rps)}`);
  console.log(
    `ratio l/b                               ${(l.p50 / b.p50).toFixed(2).padStart(8)} ${(l.p99 / b.p99).toFixed(2).padStart(8)} ${(l.rps / b.rps).toFixed(2).padStart(8)}`,
  );
  await local.close();
  raw.close();
  channel.close();

  await orc.close();
} finally {
  standalone.child.kill('SIGTERM');
  server.kill('SIGTERM');
  await once(server, 'exit');
}
