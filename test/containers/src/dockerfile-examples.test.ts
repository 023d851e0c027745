/**
 * The usage examples in docker/Dockerfile's header, run as written with what this machine's engine
 * needs changed: the host's network (the engine has no bridge: `-p H:C` becomes a free port on the
 * host's network), servers in the background, volume names of this run. lodash and six come from
 * the npm registry and PyPI, as a user's would.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { docker, uniqueName, waitFor } from './docker.js';
import { healthProbe } from './grpc.js';
import { dockerCli, repoRoot } from './paths.js';
import { freePort } from './ports.js';

const execFileAsync = promisify(execFile);

/** The `docker run` commands of the header, continuation lines joined, in order. */
function headerExamples(): string[] {
  const lines = readFileSync(join(repoRoot, 'docker/Dockerfile'), 'utf8').split('\n');
  const header = lines.slice(
    0,
    lines.findIndex((line) => !line.startsWith('#')),
  );
  return header
    .map((line) => line.replace(/^# ?/, ''))
    .join('\n')
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('docker run '));
}

const volumes = new Map<string, string>();
const containers: string[] = [];
afterAll(async () => {
  for (const name of containers) await docker(['rm', '-f', name]).catch(() => undefined);
  for (const name of volumes.values()) await docker(['volume', 'rm', '-f', name]).catch(() => undefined);
});

/** Runs one example through bash in the repository root; a server is started in the background on `port`. */
async function runExample(command: string, port?: number): Promise<{ stdout: string; name: string }> {
  const name = uniqueName('example');
  let line = command.replace(/-v (splice-[a-z]+):/g, (_, volume: string) => {
    if (!volumes.has(volume)) volumes.set(volume, uniqueName(volume));
    return `-v ${volumes.get(volume)}:`;
  });
  const published = / -p \d+:\d+/;
  const server = published.test(line);
  if (server) {
    if (port === undefined) throw new Error(`a port is needed for: ${command}`);
    line = line.replace(published, ` -e PORT=${port}`);
    containers.push(name);
  }
  line = line.replace(
    /^docker run /,
    `${dockerCli} run --network host --name ${name} ${server ? '-d ' : ''}`,
  );
  const { stdout } = await execFileAsync('bash', ['-c', line], { cwd: repoRoot, timeout: 300_000 });
  return { stdout, name };
}

async function serving(port: number): Promise<void> {
  await waitFor(
    `grpc-health-probe on ${port} to answer SERVING`,
    async () => (await healthProbe(port)).code === 0,
  );
}

describe("docker/Dockerfile's header examples", () => {
  const examples = headerExamples();

  it('are five: the pod-manager, then a Node and a Python module pod (install, serve)', () => {
    expect(examples).toHaveLength(5);
    expect(examples[0]).toContain('SERVICE_TYPE=pod_manager');
    expect(examples[1]).toContain('SERVICE_TYPE=module_install');
    expect(examples[2]).toContain('SERVICE_TYPE=module_service');
    expect(examples[3]).toContain('-m splice_module_server.install');
    expect(examples[4]).toContain('splice-orc-python:0.1.0');
  });

  it('start the pod-manager with the repository config', async () => {
    const port = await freePort();
    await runExample(examples[0] ?? '', port);
    await waitFor('/healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
  });

  it('install lodash into a volume, then serve it from there', async () => {
    const installed = await runExample(examples[1] ?? '');
    expect(installed.stdout).toContain('installed lodash@4 into /modules/install');
    const port = await freePort();
    await runExample(examples[2] ?? '', port);
    await serving(port);
  });

  it('install six with pip into a volume, then serve it from the Python image', async () => {
    const installed = await runExample(examples[3] ?? '');
    expect(installed.stdout).toContain('"target": "/modules/install"');
    const port = await freePort();
    await runExample(examples[4] ?? '', port);
    await serving(port);
  });
});
