/** The two gRPC callers of a module pod: grpc-health-probe (as the kubelet's probes) and a module client. */
import { execFile } from 'node:child_process';
import { createModuleClient, decode, encode } from '@splice-orc/protocol';
import { inject } from 'vitest';
import { MODULE_SECRET } from './manifests.js';

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
