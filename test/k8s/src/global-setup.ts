/**
 * Starts the control plane of control-plane.sh (etcd, kube-apiserver, controller-manager,
 * scheduler, kwok) on free loopback ports for the whole run and stops it after. The binaries must
 * have been built (`test/k8s/control-plane.sh build`, which .ci/run does); without them the run
 * fails with that instruction, it is never skipped.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { freePorts } from './ports.js';

const script = fileURLToPath(new URL('../control-plane.sh', import.meta.url));
const run = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    kubectl: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'splice-k8s-'));
  const [api, etcd, etcdPeer] = await freePorts(3);
  const env = {
    ...process.env,
    RUN: dir,
    API_PORT: String(api),
    ETCD_PORT: String(etcd),
    ETCD_PEER_PORT: String(etcdPeer),
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
