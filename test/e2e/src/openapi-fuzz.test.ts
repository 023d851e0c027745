/**
 * schemathesis (PyPI), a tool nobody here wrote, against a running pod-manager with a token: every
 * check, thousands of generated requests from the OpenAPI document, bounded in examples and time,
 * and zero failures expected (the few settings that differ from its defaults are explained in
 * schemathesis.toml).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp, loadConfig } from '@splice-orc/pod-manager';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, repoRoot, writeConfig } from './harness.js';
import { pythonTools } from './python-tools.js';

const token = 'schemathesis-token-0123456789';
let venv: string;
let app: FastifyInstance;
let url: string;

beforeAll(async () => {
  venv = await pythonTools();
  const configPath = writeConfig(
    { calc: { package: fixture('calc') }, greeter: { package: fixture('greeter') } },
    // Generated configs must not install anything: package changes are off. Thousands of requests
    // come from one address: the control rate limit would answer most control routes with 429 and
    // hide their own answers, so it is off here (observability-and-access.test.ts tests it).
    { auth_token: token, package_policy: { allow_change: false }, control_rate_limit_per_minute: 0 },
    // Generated jobs run for real: at most one at a time, on one worker, a few waiting.
    { jobs: { max_running: 1, max_workers: 1, max_queued: 5 } },
  );
  app = await buildApp(loadConfig(configPath), { logger: { level: 'silent' } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
}, 600_000);
afterAll(async () => {
  await app?.close();
});

describe('the API under schemathesis', () => {
  it('passes every check with no failure', async () => {
    const args = [
      '--config-file',
      join(repoRoot, 'test/e2e/schemathesis.toml'),
      'run',
      `${url}/openapi.json`,
      '--checks',
      'all',
      // Why: schemathesis.toml.
      '--exclude-checks',
      'use_after_free',
      '--header',
      `Authorization: Bearer ${token}`,
      // A generated 1 ms deadline would time calls out (a correct 504); the deadline header's own
      // validation is tested in bad-input-gets-a-clear-error.
      '--header',
      'x-splice-timeout-ms: 10000',
      '--max-examples',
      '25',
      '--max-time',
      '120',
      '--seed',
      String(Date.now() % 100_000),
      '--no-color',
      '--request-timeout',
      '15',
    ];
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile(
        join(venv, 'bin/schemathesis'),
        args,
        {
          timeout: 300_000,
          maxBuffer: 64 * 1024 * 1024,
          // It keeps a cache of failures where it runs: somewhere outside the repository.
          cwd: mkdtempSync(join(tmpdir(), 'splice-schemathesis-')),
        },
        (error, stdout, stderr) => {
          resolve({
            code: error ? ((error as { code?: number }).code ?? 1) : 0,
            output: `${stdout}${stderr}`,
          });
        },
      );
    });
    const summary = output.slice(output.lastIndexOf('SUMMARY'));
    console.log(summary);
    expect(code, output.slice(-20_000)).toBe(0);
    expect(summary).toMatch(/Tested: [23]\d/);
    expect(summary).toMatch(/\d{3,} generated/);
  }, 400_000);
});
