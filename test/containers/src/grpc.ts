/** The two gRPC callers of a module pod: grpc-health-probe (as the kubelet's probes) and a module client. */
import { execFile } from 'node:child_process';
import { createModuleClient, decode, encode } from '@splice-orc/protocol';
import { inject } from 'vitest';
import { type RunningContainer, startContainer, waitFor } from './docker.js';
import { MODULE_SECRET, type Pod } from './manifests.js';
import { dockerRunArgs, type PodRunOptions } from './pod-spec.js';

/** grpc-health-probe's exit status and output against 127.0.0.1:`port`. */
export function healthProbe(port: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      inject('healthProbe'),
      [`-addr=127.0.0.1:${port}`, '-connect-timeout=2s', '-rpc-timeout=2s'],
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, output: stdout + stderr });
      },
    );
  });
}

/** What the module-server at 127.0.0.1:`port` answers to calling its module's `fn(...args)`. */
export async function callModule(port: number, fn: string, args: unknown[]): Promise<unknown> {
  const client = createModuleClient(`127.0.0.1:${port}`, { secret: MODULE_SECRET });
  try {
    const program = encode({ v: 1, session: 's', ops: [{ op: 'call', target: null, path: [fn], args }] });
    return decode(await client.invoke(program, { timeoutMs: 10_000 }));
  } finally {
    client.close();
  }
}

/**
 * Starts a module pod's server container on `port` (host network) as the pod runs it, and waits
 * until grpc-health-probe reports it SERVING; fails at once if the container stops.
 */
export async function serveModulePod(
  pod: Pod,
  run: Omit<PodRunOptions, 'env'>,
  port: number,
): Promise<{ server: RunningContainer; health: { code: number; output: string } }> {
  const server = await startContainer(
    run.podName,
    dockerRunArgs(pod.spec, pod.container('module-server'), {
      ...run,
      env: { HOST: '127.0.0.1', PORT: String(port) },
    }),
  );
  try {
    const health = await waitFor('grpc-health-probe to answer SERVING', async () => {
      const probe = await healthProbe(port);
      if (probe.code === 0) return probe;
      if ((await server.status()) !== 'running')
        throw new Error(`the server stopped: ${await server.logs()}`);
      return undefined;
    });
    return { server, health };
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
}
