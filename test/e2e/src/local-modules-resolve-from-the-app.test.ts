/**
 * Regression: a module placed local was imported from the client package's own location, so an
 * app whose @splice-orc/client is linked from elsewhere (a workspace, `npm link`) could not import
 * a module the app itself depends on (SPLICE_LOCAL_UNAVAILABLE). It is resolved as the app would.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fixture, repoRoot, startPodManager } from './harness.js';

describe('a module placed local', () => {
  it("is imported from the app's own dependencies, in the app's process", async () => {
    await using pm = await startPodManager({ calc: { package: fixture('calc'), load_type: 'local' } });
    // An app of its own, outside this repository, that depends on calc and links the client.
    const app = mkdtempSync(join(tmpdir(), 'splice-app-'));
    mkdirSync(join(app, 'node_modules'));
    cpSync(join(repoRoot, 'test/fixtures/calc'), join(app, 'node_modules/calc'), { recursive: true });
    const client = pathToFileURL(join(repoRoot, 'packages/client/dist/index.js')).href;
    writeFileSync(
      join(app, 'main.mjs'),
      `import { connect } from '${client}';
const orc = connect('${pm.url}', { reportIntervalMs: 0 });
const calc = orc.module('calc');
console.log(JSON.stringify({ pid: await calc.pid(), own: process.pid, sum: await calc.add(2, 3) }));
await orc.close();
`,
    );
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(process.execPath, ['main.mjs'], { cwd: app, timeout: 20_000 }, (error, stdout, stderr) =>
        error ? reject(Object.assign(error, { stderr })) : resolve({ stdout, stderr }),
      ),
    );
    expect(stderr).not.toMatch(/SPLICE_LOCAL_UNAVAILABLE/);
    const result = JSON.parse(stdout.trim());
    expect(result.sum).toBe(5);
    expect(result.pid).toBe(result.own);
  });
});
