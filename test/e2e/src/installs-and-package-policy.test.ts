/**
 * What an install may run and what a REST caller may install: npm runs no install script unless
 * the module opts in (in the config file), never with the pod-manager's secrets in its
 * environment, and a package spec sent over REST must be of a kind `server.package_policy` allows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, http, startPodManager, type TestPodManager } from './harness.js';

describe('install scripts', () => {
  beforeAll(() => {
    process.env.SPLICE_AUTH_TOKEN = 'a-token-npm-scripts-must-not-see';
    process.env.SPLICE_TEST_SENTINEL = 'the pod-manager environment';
  });
  afterAll(() => {
    delete process.env.SPLICE_AUTH_TOKEN;
    delete process.env.SPLICE_TEST_SENTINEL;
  });

  it('are not run by default', async () => {
    await using pm = await startPodManager({ scripted: { package: fixture('scripted') } });
    const scripted = pm.client.module<any>('scripted');
    expect(await scripted.scriptRan()).toBeNull();
  });

  it('run when the module opts in, with none of the pod-manager secrets in their environment', async () => {
    await using pm = await startPodManager({
      scripted: { package: fixture('scripted'), install_scripts: true },
    });
    const ran = await pm.client.module<any>('scripted').scriptRan();
    expect(ran).not.toBeNull();
    expect(ran.env).toContain('PATH');
    expect(ran.env).not.toContain('SPLICE_AUTH_TOKEN');
    expect(ran.env).not.toContain('SPLICE_TEST_SENTINEL');
  });
});

describe('package specs sent over REST', () => {
  let pm: TestPodManager;
  const put = (body: unknown, url = pm.url) => http(`${url}/modules/calc/config`, { method: 'PUT', body });

  beforeAll(async () => {
    pm = await startPodManager({ calc: { package: fixture('calc') } });
  });
  afterAll(async () => {
    await pm[Symbol.asyncDispose]();
  });

  it.each([
    ['a tarball URL', 'http://127.0.0.1:9/evil.tgz', /is a url spec/],
    ['a git repository', 'github:someone/evil', /is a git spec/],
    ['a git URL', 'git+https://example.invalid/evil.git', /is a git spec/],
    ['a folder outside file_roots', 'file:/etc', /outside the folders file: specs may use/],
    ['a relative path that climbs out', 'file:../../../../etc', /outside the folders/],
  ])('refuses %s with 403 PACKAGE_NOT_ALLOWED', async (_what, spec, message) => {
    for (const body of [{ package: spec }, { package: fixture('calc'), dependency: [spec] }]) {
      const answer = await put(body);
      expect(answer.status).toBe(403);
      expect(answer.body.error).toMatchObject({
        code: 'PACKAGE_NOT_ALLOWED',
        message: expect.stringMatching(message),
      });
    }
    expect((await http(`${pm.url}/modules/calc/config`)).body.package).toMatch(/fixtures\/calc$/);
  });

  it('refuses turning on install scripts or code generation over REST', async () => {
    for (const key of ['install_scripts', 'allow_code_generation']) {
      const answer = await put({ package: fixture('calc'), [key]: true });
      expect(answer.status).toBe(403);
      expect(answer.body.error.message).toMatch(
        new RegExp(`${key} can be turned on .* only in the config file`),
      );
    }
  });

  it('accepts a file: spec under file_roots and a change that keeps the package', async () => {
    expect((await put({ package: fixture('calc'), max_replicas: 2 })).status).toBe(200);
    expect((await http(`${pm.url}/modules/calc/config`)).body.max_replicas).toBe(2);
  });

  it('refuses every change of package when allow_change is off, and other changes still apply', async () => {
    await using locked = await startPodManager(
      { calc: { package: fixture('calc') } },
      { package_policy: { allow_change: false } },
    );
    const answer = await put({ package: fixture('greeter') }, locked.url);
    expect(answer.status).toBe(403);
    expect(answer.body.error.message).toMatch(/switched off \(server.package_policy.allow_change\)/);
    expect((await put({ package: fixture('calc'), keep_warm: true }, locked.url)).status).toBe(200);
  });
});
