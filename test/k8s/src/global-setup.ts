/**
 * Starts the control plane of control-plane.sh (etcd, kube-apiserver, controller-manager,
 * scheduler, kwok) on free loopback ports for the whole run and stops it after. The binaries must
 * have been built (`test/k8s/control-plane.sh build`, which .ci/run does); without them the run
 * fails with that instruction, it is never skipped.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

const script = fileURLToPath(new URL('../control-plane.sh', import.meta.url));
const run = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    kubectl: string;
  }
}

/** A port nothing listens on now (and, for etcd, the next one too). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
      server.on('error', reject);
    });
    if (port < 65535) return port;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'splice-k8s-'));
  const env = {
    ...process.env,
    RUN: dir,
    API_PORT: String(await freePort()),
    ETCD_PORT: String(await freePort()),
  };
  try {
    await run(script, ['up'], { env, timeout: 120_000 });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    await run(script, ['down'], { env }).catch(() => undefined);
    throw new Error(`cannot start the test control plane: ${stderr || String(error)}`);
  }
  const cache =
    process.env.CACHE ??
    join(process.env.XDG_CACHE_HOME || join(process.env.HOME ?? '', '.cache'), 'splice-orc-k8s');
  project.provide('kubeconfig', join(dir, 'kubeconfig'));
  project.provide('kubectl', join(cache, 'bin-1.35.4', 'kubectl'));
  return async () => {
    await run(script, ['down'], { env });
  };
}
