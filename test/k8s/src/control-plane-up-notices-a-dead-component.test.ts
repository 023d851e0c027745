/**
 * Regression: etcd's peer port was ETCD_PORT+1, never checked, and now and then taken, so etcd died
 * and `control-plane.sh up` waited out its 60 s for an API server that could not start, failing the
 * whole suite. The ports are now chosen apart and each checked, and `up` stops as soon as a
 * component it started exits, showing the end of that component's log.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePorts } from './ports.js';

const script = fileURLToPath(new URL('../control-plane.sh', import.meta.url));
const run = promisify(execFile);

/** Runs `up` for a second control plane while another listener holds one of its ports. */
async function upWithTaken(taken: 'API_PORT' | 'ETCD_PEER_PORT') {
  const [api, etcd, peer] = await freePorts(3);
  const env = {
    ...process.env,
    RUN: mkdtempSync(join(tmpdir(), 'splice-k8s-taken-')),
    API_PORT: String(api),
    ETCD_PORT: String(etcd),
    ETCD_PEER_PORT: String(peer),
  };
  // Like a stray server: it takes connections and never answers.
  const connections = new Set<Socket>();
  const blocker = createServer((socket) => void connections.add(socket));
  await new Promise<void>((resolve) => blocker.listen(Number(env[taken]), '127.0.0.1', resolve));
  const started = Date.now();
  try {
    await run(script, ['up'], { env, timeout: 90_000 });
    return { failed: false, ms: Date.now() - started, stderr: '' };
  } catch (error) {
    return { failed: true, ms: Date.now() - started, stderr: String((error as { stderr?: string }).stderr) };
  } finally {
    await run(script, ['down'], { env }).catch(() => undefined);
    for (const socket of connections) socket.destroy();
    await new Promise((resolve) => blocker.close(resolve));
    rmSync(env.RUN, { recursive: true, force: true });
  }
}

describe('control-plane.sh up', () => {
  it('gets distinct ports, each free, from below the ephemeral range', async () => {
    const ports = await freePorts(3);
    expect(new Set(ports).size).toBe(3);
    const range = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    for (const port of ports) {
      expect(port).toBeLessThan(Number(range.trim().split(/\s+/)[0]));
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("stops at once with etcd's log when etcd cannot bind its peer port", async () => {
    const up = await upWithTaken('ETCD_PEER_PORT');
    expect(up.failed).toBe(true);
    expect(up.stderr).toMatch(/etcd exited/);
    expect(up.stderr).toMatch(/address already in use/);
    expect(up.ms).toBeLessThan(20_000);
  }, 120_000);

  it("stops at once with the API server's log when it cannot bind its port", async () => {
    const up = await upWithTaken('API_PORT');
    expect(up.failed).toBe(true);
    expect(up.stderr).toMatch(/apiserver exited/);
    expect(up.stderr).toMatch(/address already in use/);
    expect(up.ms).toBeLessThan(20_000);
  }, 120_000);
});
