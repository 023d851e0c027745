/**
 * A Node module pod as the Kubernetes backend writes it: the init container (`module_install`)
 * installs a fixture into the pod's module volume (a named volume here, new and empty like an
 * emptyDir), then the server container (`module_service`) serves it from there, read-only. Both
 * run as the Deployment says: uid 1000, read-only root, no capabilities, no privilege escalation,
 * their memory limits.
 */
import { describe, expect, it } from 'vitest';
import { createVolume, docker, runToExit, uniqueName } from './docker.js';
import { callModule, serveModulePod } from './grpc.js';
import { modulePod } from './manifests.js';
import { fixturesDir } from './paths.js';
import { dockerRunArgs } from './pod-spec.js';
import { freePort } from './ports.js';

const fixtures = ['-v', `${fixturesDir}:/fixtures:ro`];

describe('a Node module pod from the image', () => {
  it('installs its module into a new named volume, then serves it to grpc-health-probe and a gRPC client', async () => {
    const pod = modulePod('calc', { package: 'file:/fixtures/calc' });
    await using volume = await createVolume(uniqueName('modules'));
    const podName = uniqueName('calc');
    const run = { podName, volumes: { modules: volume.name } };

    const install = await runToExit(
      dockerRunArgs(pod.spec, pod.container('install'), { ...run, extra: fixtures }),
    );
    expect(install.code, install.stdout + install.stderr).toBe(0);
    expect(install.stdout).toContain('installed file:/fixtures/calc into /modules/install');

    const port = await freePort();
    const served = await serveModulePod(pod, run, port);
    await using server = served.server;
    const { health } = served;
    expect(health.output).toMatch(/status: SERVING/);
    expect(await callModule(port, 'add', [1, 2])).toMatchObject({ ok: true, value: 3 });
    expect(await server.logs()).toContain(`"serverId":"${podName}"`);

    // From inside: uid 1000, no capabilities, no privilege gain, nothing writable but /tmp.
    const inside = await docker([
      'exec',
      server.name,
      'sh',
      '-c',
      'id -u; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; touch /app/x /modules/x 2>&1; touch /tmp/x && echo tmp ok',
    ]);
    expect(inside).toMatch(/^1000\n/);
    expect(inside).toMatch(/CapEff:\s+0000000000000000/);
    expect(inside).toMatch(/NoNewPrivs:\s+1/);
    expect(inside).toMatch(/touch: cannot touch '\/app\/x': Read-only file system/);
    expect(inside).toMatch(/touch: cannot touch '\/modules\/x': Read-only file system/);
    expect(inside).toContain('tmp ok');

    const host = JSON.parse(await docker(['inspect', '-f', '{{json .HostConfig}}', server.name])) as {
      ReadonlyRootfs: boolean;
      CapDrop: string[];
      SecurityOpt: string[];
      Memory: number;
    };
    expect(host).toMatchObject({
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
    });
    expect(host.Memory).toBe(512 * 1024 * 1024);
    expect((await docker(['inspect', '-f', '{{.Config.User}}', server.name])).trim()).toBe('1000:1000');
  });

  it('reports an install that fails with exit status 2 and npm’s reason', async () => {
    const pod = modulePod('missing', { package: 'file:/fixtures/no-such-module' });
    await using volume = await createVolume(uniqueName('modules'));
    const install = await runToExit(
      dockerRunArgs(pod.spec, pod.container('install'), {
        podName: uniqueName('missing'),
        volumes: { modules: volume.name },
        extra: fixtures,
      }),
    );
    expect(install.code).toBe(2);
    expect(install.stderr).toMatch(/npm install file:\/fixtures\/no-such-module failed/);
  });
});
