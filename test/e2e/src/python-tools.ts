/**
 * A Python virtual environment with the tools some tests run (requirements-tools.txt), made once per
 * set of requirements under ~/.cache/splice-orc-tools. Needs python3 (3.10+) and PyPI; a test that
 * needs it fails with the reason when either is missing, it is never skipped.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './harness.js';

const run = promisify(execFile);
const requirements = join(repoRoot, 'test/e2e/requirements-tools.txt');

/** The folder of the environment, made if needed; its executables are in `bin/`. */
export async function pythonTools(): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(requirements)).digest('hex').slice(0, 12);
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const venv = join(cache, 'splice-orc-tools', `venv-${hash}`);
  const done = join(venv, '.installed');
  if (existsSync(done)) return venv;
  const python = process.env.PYTHON || 'python3';
  await run(python, ['-m', 'venv', '--clear', venv], { timeout: 120_000 });
  await run(
    join(venv, 'bin/pip'),
    ['install', '--quiet', '--disable-pip-version-check', '-r', requirements],
    {
      timeout: 600_000,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  await run('touch', [done]);
  return venv;
}
