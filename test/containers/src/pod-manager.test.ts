/**
 * The pod-manager from the image, run as k8s/deployment.yaml runs it (uid 1000, read-only root,
 * no capabilities, the config mounted read-only at /etc/splice-orc, the token from its Secret,
 * /tmp an emptyDir), with the local backend: its module-servers are processes in its container.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@splice-orc/client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runToExit, startContainer, uniqueName, waitFor } from './docker.js';
import { podManagerPod } from './manifests.js';
import { fixturesDir, repoRoot } from './paths.js';
import { dockerRunArgs, type PodRunOptions } from './pod-spec.js';
import { freePort } from './ports.js';

/** The Landlock launcher of isolated module-servers (the same file is in the image). */
const launcher = join(repoRoot, 'packages/python-module-server/src/splice_module_server/isolation.py');

/** A folder holding config.json, readable by the container's user, as the ConfigMap's volume. */
function configVolume(config: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'splice-ctest-'));
  chmodSync(dir, 0o755);
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config), { mode: 0o644 });
  return dir;
}

function podManagerRun(env: Record<string, string>, token: string): PodRunOptions {
  const config = {
    module_config: {
      calc: { package: 'file:/fixtures/calc' },
      hostile: { package: 'file:/fixtures/hostile' },
    },
    server: { backend: 'local', cache_dir: '/tmp/splice-orc' },
  };
  return {
    podName: uniqueName('pod-manager'),
    volumes: { config: configVolume(config) },
    secrets: { 'splice-orc-auth/token': token },
    env,
    extra: ['-v', `${fixturesDir}:/fixtures:ro`],
  };
}

describe('the pod-manager from the image', () => {
  it('answers /healthz and serves a call through a module-server it starts', async () => {
    const pod = podManagerPod();
    const token = randomBytes(24).toString('hex');
    const port = await freePort();
    const run = podManagerRun({ HOST: '127.0.0.1', PORT: String(port) }, token);
    await using container = await startContainer(
      run.podName,
      dockerRunArgs(pod.spec, pod.container('pod-manager'), run),
    );
    const url = `http://127.0.0.1:${port}`;
    await waitFor('the pod-manager to answer /healthz', async () => {
      if ((await container.status()) !== 'running') throw new Error(`it stopped: ${await container.logs()}`);
      return (await fetch(`${url}/healthz`)).ok;
    });
    // Only with the token from the Secret.
    expect((await fetch(`${url}/modules`)).status).toBe(401);
    const orc = connect(url, { token, timeoutMs: 60_000 });
    try {
      const calc = orc.module<{ add(a: number, b: number): number }>('calc');
      expect(await calc.add(1, 2)).toBe(3);
      const view = await fetch(`${url}/modules/calc`, { headers: { authorization: `Bearer ${token}` } });
      // Served by a module-server process of the container, not in the pod-manager.
      expect(await view.json()).toMatchObject({
        state: 'ready',
        placement: 'remote',
        calls_served: 1,
        replicas: [{ state: 'ready', pid: expect.any(Number) }],
      });
      // In the container too, an isolated server is in a Landlock domain (the image has python3
      // for the launcher): it cannot signal the pod-manager, which Node's permission model allows.
      // (Signals are scoped from Landlock ABI 6, Linux 6.12; the container has the host's kernel.)
      const abi = Number(execFileSync('python3', ['-I', '-S', launcher, '--abi'], { encoding: 'utf8' }));
      const hostile = orc.module<{ signalParent(signal: number): { outcome: string } }>('hostile');
      expect((await hostile.signalParent(0)).outcome).toBe(abi >= 6 ? 'EPERM' : 'sent');
    } finally {
      await orc.close();
    }
  });

  it('exits with status 2 and names the accepted values when SERVICE_TYPE is unknown', async () => {
    const pod = podManagerPod();
    const run = podManagerRun({ SERVICE_TYPE: 'web' }, 'unused');
    const exited = await runToExit(dockerRunArgs(pod.spec, pod.container('pod-manager'), run));
    expect(exited.code).toBe(2);
    expect(exited.stderr).toBe(
      "splice-orc: SERVICE_TYPE must be one of pod_manager, module_service, module_install; got 'web'\n",
    );
  });
});
