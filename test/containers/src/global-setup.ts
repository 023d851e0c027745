/**
 * Builds what the container tests run, once per run: the images, with docker/build-images.sh
 * (cached: seconds when nothing changed; it starts a Docker engine if none answers and installs
 * one if missing, which needs root), and grpc-health-probe from the Go module proxy (once, cached
 * beside the images). A missing tool fails the run with the reason: it is never skipped.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { cacheDir, repoRoot } from './paths.js';

/** The grpc-health-probe release the probes use (the Go module proxy serves it). */
const HEALTH_PROBE_VERSION = 'v0.4.63';

declare module 'vitest' {
  export interface ProvidedContext {
    healthProbe: string;
  }
}

export default async function setup(project: TestProject) {
  await run('bash', [join(repoRoot, 'docker/build-images.sh')], {}, 1_800_000);
  project.provide('healthProbe', await healthProbe());
}

/** grpc-health-probe, built with `go install` into the cache if it is not there yet. */
async function healthProbe(): Promise<string> {
  const dir = join(cacheDir, 'tools', `grpc-health-probe-${HEALTH_PROBE_VERSION}`);
  const binary = join(dir, 'grpc-health-probe');
  if (existsSync(binary)) return binary;
  // The Go that is installed builds it (GOTOOLCHAIN=local: no toolchain download for a newer
  // `toolchain` line); one job at a time beside the other users of two cores.
  await run(
    'go',
    [
      'install',
      '-trimpath',
      '-ldflags=-s -w',
      `github.com/grpc-ecosystem/grpc-health-probe@${HEALTH_PROBE_VERSION}`,
    ],
    { GOBIN: dir, GOTOOLCHAIN: 'local', GOFLAGS: '-p=1', HOME: process.env.HOME ?? homedir() },
    600_000,
  );
  return binary;
}

/** Runs a command with its output on this process's stderr; rejects unless it exits 0. */
function run(command: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', process.stderr, process.stderr],
      timeout: timeoutMs,
    });
    child.on('error', (error) => reject(new Error(`cannot run ${command}: ${error.message}`)));
    child.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit status ${code}`})`)),
    );
  });
}
