/**
 * A stand-in for the kubelet of module pods labelled `kubelet.splice-orc.test/manual` (kwok leaves
 * those alone; see control-plane.sh). There is no container runtime here, so "running the
 * container" means running the real module-server process the image would run, bound to the pod's
 * own loopback IP; and, like a kubelet, it reports the pod's status to the API server: Ready once
 * the server listens, or a failure such as ImagePullBackOff.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setHeaderOptions, type V1Pod, type V1PodStatus } from '@kubernetes/client-node';
import { adminApi, repoRoot } from './harness.js';

/** The pod label that hands a pod to this kubelet. */
export const MANUAL = { 'kubelet.splice-orc.test/manual': 'true' };

const serverMain = createRequire(import.meta.url).resolve('@splice-orc/module-server/main');
let nextIp = 1;

/** The image of Python module pods in these tests (kubernetes.python_module_image). */
export const PYTHON_IMAGE = 'splice-orc-python:test';
const pythonServer = join(repoRoot, 'packages/python-module-server');
let pythonEnv: string | undefined;

/**
 * How the container of a pod would run: the Node module-server, or for the Python image the Python
 * module-server (in the Python package's own environment, which has grpcio) with the Python fixture
 * importable as the init container would have installed it.
 */
function commandFor(image: string): { command: string; args: string[]; env: Record<string, string> } {
  if (image !== PYTHON_IMAGE) return { command: process.execPath, args: [serverMain], env: {} };
  pythonEnv ??= execFileSync(process.execPath, [join(pythonServer, 'scripts/python.mjs'), 'env'], {
    encoding: 'utf8',
  }).trim();
  return {
    command: join(pythonEnv, 'bin/python'),
    args: ['-m', 'splice_module_server'],
    env: {
      PYTHONPATH: join(pythonServer, 'src'),
      MODULE_RESOLVE_FROM: join(repoRoot, 'test/fixtures/pyfixture'),
    },
  };
}

/** What the kubelet does with a new pod: run it, or report a failure status. */
export type PodAction = 'serve' | 'ignore' | { fail: V1PodStatus };

/** Runs (or fails) manual pods of one namespace until disposed. */
export class TestKubelet {
  readonly #api = adminApi();
  readonly #seen = new Set<string>();
  readonly #servers = new Map<string, ChildProcess>();
  readonly #resolveFrom: string;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(
    readonly namespace: string,
    /** Decides per pod; default: serve it. */
    public action: (pod: V1Pod) => PodAction = () => 'serve',
  ) {
    // The test fixtures, importable by name, as an init container would have installed them.
    this.#resolveFrom = mkdtempSync(join(tmpdir(), 'splice-kubelet-'));
    mkdirSync(join(this.#resolveFrom, 'node_modules'));
    symlinkSync(join(repoRoot, 'test/fixtures/calc'), join(this.#resolveFrom, 'node_modules/calc'));
    this.#timer = setInterval(() => void this.#sync(), 100);
  }

  /** Module-server processes running, by pod name. */
  get running(): string[] {
    return [...this.#servers.keys()];
  }

  /** Stops serving a pod (its process dies) and reports it not ready, as after a crash. */
  async crash(podName: string): Promise<void> {
    this.#servers.get(podName)?.kill('SIGKILL');
    this.#servers.delete(podName);
    await this.#report(podName, {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady' }],
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    clearInterval(this.#timer);
    for (const child of this.#servers.values()) child.kill('SIGKILL');
    this.#servers.clear();
  }

  async #sync(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const { items } = await this.#api.core.listNamespacedPod({
        namespace: this.namespace,
        labelSelector: 'kubelet.splice-orc.test/manual=true',
      });
      // A pod deleted outright (grace period 0) is gone before a tick sees its deletion: stop its server too.
      const present = new Set(items.map((p) => p.metadata?.name ?? ''));
      for (const [name, child] of this.#servers) {
        if (present.has(name)) continue;
        child.kill('SIGTERM');
        this.#servers.delete(name);
      }
      for (const pod of items) {
        const name = pod.metadata?.name ?? '';
        if (pod.metadata?.deletionTimestamp) {
          this.#servers.get(name)?.kill('SIGTERM');
          this.#servers.delete(name);
          // Gone from the kubelet's side: the API server may delete it now.
          await this.#api.core
            .deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0 })
            .catch(() => undefined);
          continue;
        }
        if (this.#seen.has(name) || !pod.spec?.nodeName) continue;
        // An ignored pod is asked about again on the next tick (a test may change the action).
        const action = this.action(pod);
        if (action === 'ignore') continue;
        this.#seen.add(name);
        if (action === 'serve') await this.#serve(pod);
        else await this.#report(name, action.fail);
      }
    } catch {
      // The next tick tries again.
    } finally {
      this.#busy = false;
    }
  }

  /** Starts the module-server the pod's container would run, at the pod's IP, then reports Ready. */
  async #serve(pod: V1Pod): Promise<void> {
    const name = pod.metadata?.name ?? '';
    const container = pod.spec?.containers.find((c) => c.name === 'module-server');
    const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value ?? '']));
    const ip = `127.78.0.${nextIp++}`;
    const run = commandFor(container?.image ?? '');
    const child = spawn(run.command, run.args, {
      // The container's environment as a kubelet gives it (the secret and NODE_OPTIONS included),
      // with what only a real pod has replaced: its own address and the installed module.
      env: {
        PATH: process.env.PATH ?? '',
        ...env,
        MODULE_RESOLVE_FROM: this.#resolveFrom,
        ...run.env,
        HOST: ip,
        PORT: '50051',
        SPLICE_SERVER_ID: name,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.#servers.set(name, child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('"listening"')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`module-server for ${name} exited with ${code}`)));
    });
    const now = new Date();
    await this.#report(name, {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      startTime: now,
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: now },
        { type: 'Ready', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
      ],
      containerStatuses: [
        {
          name: 'module-server',
          image: container?.image ?? '',
          imageID: '',
          ready: true,
          restartCount: 0,
          state: { running: { startedAt: now } },
        },
      ],
    });
  }

  async #report(name: string, status: V1PodStatus): Promise<void> {
    await this.#api.core.patchNamespacedPodStatus(
      { name, namespace: this.namespace, body: { status } },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
  }
}
