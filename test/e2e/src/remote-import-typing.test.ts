/**
 * The README's TypeScript declaration for imports that go remote, compiled as written with tsc
 * and the real @types/lodash (installed as lodash-types): awaiting a call gives its value, and
 * using a call as its value does not compile.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './harness.js';

/** The `remote-modules.d.ts` block of the README, verbatim. */
function readmeDeclaration(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const found = readme.match(/```ts\n(\/\/ remote-modules\.d\.ts\n[\s\S]*?)```/);
  if (!found?.[1]) throw new Error('README has no remote-modules.d.ts block');
  return found[1];
}

/** Compiles `app` beside the declaration; resolves with tsc's output (empty when it compiles). */
async function compile(app: string): Promise<string> {
  // Inside this package, so that @splice-orc/client and lodash-types resolve as in an app.
  const dir = mkdtempSync(join(fileURLToPath(new URL('..', import.meta.url)), '.typing-'));
  try {
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(dir, 'remote-modules.d.ts'), readmeDeclaration());
    writeFileSync(join(dir, 'app.ts'), app);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          noEmit: true,
          skipLibCheck: true,
          types: [],
        },
        files: ['remote-modules.d.ts', 'app.ts'],
      }),
    );
    try {
      await promisify(execFile)(
        process.execPath,
        [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', dir],
        {
          timeout: 120_000,
        },
      );
      return '';
    } catch (error) {
      return String((error as { stdout?: string }).stdout ?? error);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("the README's typing of imports that go remote", () => {
  it('compiles awaited calls as their values', async () => {
    const app = [
      "import _, { chunk, sum } from 'lodash';",
      'const total: number = await sum([1, 2, 3]);',
      'const viaDefault: number = await _.sum([1, 2]);',
      'const rows = (await chunk([1, 2, 3], 2)) as number[][];',
      'export { total, viaDefault, rows };',
      '',
    ].join('\n');
    expect(await compile(app)).toBe('');
  }, 120_000);

  it('refuses a call used as its value', async () => {
    const app = [
      "import { sum } from 'lodash';",
      'const total: number = sum([1, 2, 3]);',
      'export { total };',
      '',
    ].join('\n');
    expect(await compile(app)).toMatch(
      /app\.ts\(2,7\): error TS2322: Type 'RemoteChain<number>' is not assignable to type 'number'/,
    );
  }, 120_000);
});
