/**
 * Starts the control plane of control-plane.sh and a real node (real-node.sh: kubelet on
 * containerd) for the real-node suite, with the product images loaded into containerd, and tears
 * both down after. Honors RUN, API_PORT, ETCD_PORT and ETCD_PEER_PORT (so that it can run beside
 * another control plane on the machine); without them, a fresh folder and free ports. Needs root
 * and the images in the Docker engine (docker/build-images.sh).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE } from '@splice-orc/pod-manager/kubernetes';
import type { TestProject } from 'vitest/node';
import { freePorts } from '../ports.js';

const controlPlane = fileURLToPath(new URL('../../control-plane.sh', import.meta.url));
const realNode = fileURLToPath(new URL('../../real-node.sh', import.meta.url));
const run = promisify(execFile);

/** The host's address on the pods' bridge (real-node.sh's POD_SUBNET.1). */
export const NODE_IP = '10.244.77.1';

declare module 'vitest' {
  export interface ProvidedContext {
    apiPort: number;
  }
}

export default async function setup(project: TestProject) {
  const [api, etcd, etcdPeer] = await freePorts(3);
  const env = {
    ...process.env,
    RUN: process.env.RUN ?? mkdtempSync(join(tmpdir(), 'splice-real-node-')),
    API_PORT: process.env.API_PORT ?? String(api),
    ETCD_PORT: process.env.ETCD_PORT ?? String(etcd),
    ETCD_PEER_PORT: process.env.ETCD_PEER_PORT ?? String(etcdPeer),
    POD_SUBNET: NODE_IP.replace(/\.1$/, ''),
    // Pods reach the API server at the bridge address, and in-cluster clients at the Service IP.
    API_EXTRA_SAN: `IP:${NODE_IP},IP:10.96.0.1`,
  };
  const down = async () => {
    await run(realNode, ['down'], { env, timeout: 180_000 }).catch(() => undefined);
    await run(controlPlane, ['down'], { env }).catch(() => undefined);
  };
  const started = Date.now();
  try {
    await run(controlPlane, ['up'], { env, timeout: 120_000 });
    const { stderr } = await run(realNode, ['up', DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE], {
      env,
      timeout: 900_000,
    });
    process.stderr.write(stderr);
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    await down();
    throw new Error(`cannot start the control plane and the real node: ${stderr || String(error)}`);
  }
  process.stderr.write(`control plane and real node up in ${Date.now() - started} ms\n`);
  const cache =
    process.env.CACHE ??
    join(process.env.XDG_CACHE_HOME || join(process.env.HOME ?? '', '.cache'), 'splice-orc-k8s');
  const kubectl = join(cache, 'bin-1.35.4', 'kubectl');
  // Pods that select no node (the pod-manager's own, from k8s/) must land on the real node: the
  // kwok node, which runs nothing, takes none.
  await run(kubectl, [
    '--kubeconfig',
    join(env.RUN, 'kubeconfig'),
    'taint',
    'node',
    'kwok-node-0',
    'kwok.x-k8s.io/node=fake:NoSchedule',
  ]);
  project.provide('kubeconfig', join(env.RUN, 'kubeconfig'));
  project.provide('kubectl', kubectl);
  project.provide('apiPort', Number(env.API_PORT));
  return down;
}
