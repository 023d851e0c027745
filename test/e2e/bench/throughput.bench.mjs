// `pnpm bench` (throughput): splice-orc against a minimal reference chain built here with the same
// libraries — undici -> Fastify -> grpc-js -> a grpc-js server, msgpack bytes forwarded as they are
// (bench/reference/) — in one run on one machine, so every figure is a ratio to the reference:
//   (a) one small call (add(1, 2)) at a time, and at 64 in flight, without auto-batching (and, for
//       comparison, with the pod-manager's coalescing of concurrent calls turned off as well);
//   (b) the same at 64 in flight with auto-batching (the client's default);
//   (c) a dependent chain of 3 calls pipelined, against one call;
//   (i) `for await` over a remote generator: items/s in windows, with and without read-ahead;
//   (k) callbacks: a function of the app called by the module, synchronously (one round trip each)
//       and asynchronously, per callback against one plain call;
// then throughput against calls in flight (1 to 256) for the reference and both modes, written as
// a chart (docs/throughput.svg; BENCH_CHART=path to write elsewhere, 0 to skip).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect } from '@splice-orc/client';
import { pack, unpack } from 'msgpackr';
import { Pool } from 'undici';
import { concurrent, sequential } from './measure.mjs';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const here = dirname(fileURLToPath(import.meta.url));
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 3000);
const CONCURRENT_MS = Number(process.env.BENCH_CONCURRENT_MS ?? 2000);
const LEVELS = [1, 4, 16, 64, 256];
const seq = (call) => sequential(call, SEQUENTIAL, 300);
const atLevel = (call, inFlight) => concurrent(call, inFlight, CONCURRENT_MS, { warmUp: true });
const CHART = process.env.BENCH_CHART ?? join(root, 'docs/throughput.svg');

/** Starts a node script as its own process; resolves with the port it prints. */
async function start(args, env = {}) {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /"port":(\d+)|listening on http:\/\/[^:]+:(\d+)/.exec(line);
      if (match) resolve(Number(match[1] ?? match[2]));
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
  return { child, port };
}

const children = [];
try {
  // The reference chain.
  const server = await start([join(here, 'reference/server.mjs')]);
  children.push(server.child);
  const forwarder = await start([join(here, 'reference/forwarder.mjs'), `127.0.0.1:${server.port}`]);
  children.push(forwarder.child);
  const pool = new Pool(`http://127.0.0.1:${forwarder.port}`, { connections: 16, pipelining: 1 });
  const program = pack({
    v: 1,
    session: 'bench',
    ops: [{ op: 'call', target: null, path: ['add'], args: [1, 2] }],
  });
  const reference = async () => {
    const response = await pool.request({
      method: 'POST',
      path: '/invoke',
      body: program,
      headers: { 'content-type': 'application/msgpack' },
      signal: AbortSignal.timeout(10_000),
    });
    const answer = unpack(Buffer.from(await response.body.arrayBuffer()));
    if (answer.value !== 3) throw new Error('wrong answer');
  };

  // splice-orc: the pod-manager as its own process, the calc fixture on the local backend.
  // A second one with `server.coalesce_calls` off: every call its own Invoke on the last hop too.
  const dir = mkdtempSync(join(tmpdir(), 'splice-bench-tp-'));
  const podManager = async (coalesce) => {
    const configPath = join(dir, `config-${coalesce}.json`);
    writeFileSync(
      configPath,
      JSON.stringify({
        module_config: { calc: { package: `file:${join(root, 'test/fixtures/calc')}` } },
        server: { cache_dir: join(root, '.splice-cache'), port: 0, coalesce_calls: coalesce },
      }),
    );
    const pm = await start([join(root, 'packages/pod-manager/dist/cli.js'), 'serve', '--config', configPath]);
    children.push(pm.child);
    const url = `http://127.0.0.1:${pm.port}`;
    await fetch(`${url}/modules/calc/load`, { method: 'POST' }).then((r) => r.json());
    return url;
  };
  const url = await podManager(true);
  const uncoalescedClient = connect(await podManager(false), { batch: false });
  const uncoalesced = uncoalescedClient.module('calc');
  const unbatchedClient = connect(url, { batch: false });
  const batchedClient = connect(url);
  const plain = unbatchedClient.module('calc');
  const batchedCalc = batchedClient.module('calc');
  const unbatched = async () => {
    if ((await plain.add(1, 2)) !== 3) throw new Error('wrong answer');
  };
  const batched = async () => {
    if ((await batchedCalc.add(1, 2)) !== 3) throw new Error('wrong answer');
  };
  const chain = async () => {
    const m = [
      [2, 0],
      [0, 3],
    ];
    if ((await plain.det(plain.matrix(m).scale(2))) !== 24) throw new Error('wrong answer');
  };

  const ref = { ...(await seq(reference)), at64: await atLevel(reference, 64) };
  const a = { ...(await seq(unbatched)), at64: await atLevel(unbatched, 64) };
  const b = { at64: await atLevel(batched, 64) };
  const plainHop = {
    at64: await atLevel(async () => {
      if ((await uncoalesced.add(1, 2)) !== 3) throw new Error('wrong answer');
    }, 64),
  };
  const c = await seq(chain);

  const f = (ms) => ms.toFixed(3).padStart(8);
  const n = (v) => Math.round(v).toString().padStart(8);
  const x = (v) => v.toFixed(2).padStart(6);
  console.log(
    `\nsplice-orc against a minimal reference chain (undici -> Fastify -> grpc-js -> grpc-js server)`,
  );
  console.log(
    `${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}, sequential ${SEQUENTIAL} calls, ${CONCURRENT_MS} ms per concurrency level`,
  );
  console.log(
    '                                          p50 ms   p99 ms  calls/s  ratio to reference (p50, calls/s)',
  );
  console.log(`reference, one at a time                 ${f(ref.p50)} ${f(ref.p99)}`);
  console.log(
    `(a) splice-orc unbatched, one at a time  ${f(a.p50)} ${f(a.p99)}           ${x(a.p50 / ref.p50)}`,
  );
  console.log(
    `reference, 64 in flight                  ${f(ref.at64.p50)} ${f(ref.at64.p99)} ${n(ref.at64.rps)}`,
  );
  console.log(
    `(a) splice-orc unbatched, 64 in flight   ${f(a.at64.p50)} ${f(a.at64.p99)} ${n(a.at64.rps)} ${x(a.at64.p50 / ref.at64.p50)} ${x(a.at64.rps / ref.at64.rps)}`,
  );
  console.log(
    `    same, pod-manager not coalescing     ${f(plainHop.at64.p50)} ${f(plainHop.at64.p99)} ${n(plainHop.at64.rps)} ${x(plainHop.at64.p50 / ref.at64.p50)} ${x(plainHop.at64.rps / ref.at64.rps)}`,
  );
  console.log(
    `(b) splice-orc batched, 64 in flight     ${f(b.at64.p50)} ${f(b.at64.p99)} ${n(b.at64.rps)} ${x(b.at64.p50 / ref.at64.p50)} ${x(b.at64.rps / ref.at64.rps)}`,
  );
  console.log(
    `(c) 3 dependent calls pipelined          ${f(c.p50)} ${f(c.p99)}           ${x(c.p50 / a.p50)} (to one call)`,
  );

  // (i) `for await` over a remote endless generator: items/s one item per request, in windows of
  // 64 without read-ahead, and in windows with read-ahead (the client's default).
  const itemsPerSecond = async (iterate, items) => {
    const client = connect(url, { batch: false, iterate });
    try {
      let seen = 0;
      const t0 = performance.now();
      for await (const _item of client.module('calc').forever()) if (++seen === items) break;
      return items / ((performance.now() - t0) / 1000);
    } finally {
      await client.close();
    }
  };
  const perItem = await itemsPerSecond({ window: 1, readAhead: false }, 2_000);
  const windowed = await itemsPerSecond({ window: 64, readAhead: false }, 50_000);
  const readAhead = await itemsPerSecond({ window: 64, readAhead: true }, 50_000);
  console.log('\n(i) for await over a remote generator           items/s  ratio to one item per request');
  console.log(`one item per request                          ${n(perItem)}`);
  console.log(`windows of 64, no read-ahead                  ${n(windowed)}  ${x(windowed / perItem)}`);
  console.log(`windows of 64, read-ahead (default)           ${n(readAhead)}  ${x(readAhead / perItem)}`);

  // (k) callbacks: per callback, a module looping over 500 items with the app's function, against
  // one plain call (a.p50); and a call that passes one callback and calls it once, against a call.
  const callbacksClient = connect(url, { batch: false });
  const cb = callbacksClient.module('calc');
  const items = Array.from({ length: 500 }, (_, i) => i);
  const perCallback = async (run) => {
    await run(); // warm: the callback channel and its home replica
    const times = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      await run();
      times.push((performance.now() - t0) / items.length);
    }
    return times.sort((p, q) => p - q)[2];
  };
  const syncMs = await perCallback(async () => {
    if ((await cb.mapWith(items, (i) => i + 1))[499] !== 500) throw new Error('wrong answer');
  });
  const asyncMs = await perCallback(async () => {
    if ((await cb.mapAsync(items, async (i) => i + 1))[499] !== 500) throw new Error('wrong answer');
  });
  // A fresh function on each call: the module-server's collector takes their stubs, and the app
  // forgets them; how many are still live after the run shows it (without that: one per call).
  let passed = 0;
  const once = await seq(async () => {
    passed++;
    if ((await cb.kindOfResult((v) => v, 1)) !== 'number') throw new Error('wrong answer');
  });
  const stillLive = callbacksClient.liveCallbacks();
  await callbacksClient.close();
  console.log('\n(k) callbacks                                   ms      ratio to one plain call (p50)');
  console.log(`one plain call, p50                          ${f(a.p50)}`);
  console.log(`synchronous callback, per call of it         ${f(syncMs)}  ${x(syncMs / a.p50)}`);
  console.log(`async callback (promise), per call of it     ${f(asyncMs)}  ${x(asyncMs / a.p50)}`);
  console.log(`a call passing one callback it calls, p50    ${f(once.p50)}  ${x(once.p50 / a.p50)}`);
  console.log(`  (a fresh function each call: ${stillLive} of the ${passed} still live at the end)`);

  if (CHART !== '0') {
    const series = { reference: [], unbatched: [], batched: [] };
    for (const level of LEVELS) {
      series.reference.push((await atLevel(reference, level)).rps);
      series.unbatched.push((await atLevel(unbatched, level)).rps);
      series.batched.push((await atLevel(batched, level)).rps);
    }
    console.log(`\ncalls/s by calls in flight: ${LEVELS.join(', ')}`);
    for (const [name, values] of Object.entries(series))
      console.log(`${name.padEnd(10)} ${values.map(n).join(' ')}`);
    mkdirSync(dirname(CHART), { recursive: true });
    writeFileSync(CHART, chart(series, `${cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`));
    console.log(`chart written to ${CHART}`);
  }
  await unbatchedClient.close();
  await uncoalescedClient.close();
  await batchedClient.close();
  await pool.close();
} finally {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));
}

/** Throughput against calls in flight (log scale), one line per chain, as a small SVG. */
function chart(series, caption) {
  const width = 560;
  const height = 320;
  const pad = { left: 64, right: 120, top: 28, bottom: 44 };
  const max = Math.max(...Object.values(series).flat()) * 1.1;
  const xAt = (i) => pad.left + (i / (LEVELS.length - 1)) * (width - pad.left - pad.right);
  const yAt = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
  const colors = { reference: '#888888', unbatched: '#1f77b4', batched: '#d62728' };
  const labels = {
    reference: 'reference chain',
    unbatched: 'splice-orc',
    batched: 'splice-orc, auto-batched',
  };
  const lines = Object.entries(series).map(([name, values]) => {
    const points = values.map((v, i) => `${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`).join(' ');
    const last = values.length - 1;
    return [
      `<polyline fill="none" stroke="${colors[name]}" stroke-width="2" points="${points}"/>`,
      ...values.map(
        (v, i) =>
          `<circle cx="${xAt(i).toFixed(1)}" cy="${yAt(v).toFixed(1)}" r="3" fill="${colors[name]}"/>`,
      ),
      `<text x="${xAt(last) + 8}" y="${yAt(values[last]) + 4}" font-size="11" fill="${colors[name]}">${labels[name]}</text>`,
    ].join('\n');
  });
  const ticks = Array.from({ length: 5 }, (_, i) => (max / 5) * (i + 1));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad.left}" y="16" font-size="13">calls/s of add(1, 2) against calls in flight (${caption})</text>
${ticks.map((t) => `<line x1="${pad.left}" x2="${width - pad.right}" y1="${yAt(t)}" y2="${yAt(t)}" stroke="#eeeeee"/><text x="${pad.left - 6}" y="${yAt(t) + 4}" font-size="10" text-anchor="end">${Math.round(t)}</text>`).join('\n')}
${LEVELS.map((l, i) => `<text x="${xAt(i)}" y="${height - pad.bottom + 16}" font-size="10" text-anchor="middle">${l}</text>`).join('\n')}
<text x="${(pad.left + width - pad.right) / 2}" y="${height - 8}" font-size="11" text-anchor="middle">calls in flight</text>
<line x1="${pad.left}" x2="${pad.left}" y1="${pad.top}" y2="${height - pad.bottom}" stroke="#444444"/>
<line x1="${pad.left}" x2="${width - pad.right}" y1="${height - pad.bottom}" y2="${height - pad.bottom}" stroke="#444444"/>
${lines.join('\n')}
</svg>
`;
}
