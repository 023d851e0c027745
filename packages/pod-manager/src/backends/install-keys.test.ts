// Install folders are keyed by everything that is installed: an edited local package (a `file:`
// folder) gets a new key, for npm and for Python modules alike, so the edit is installed.
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModuleSpec } from '../config.js';
import { installKey } from './installer.js';
import { pythonInstallKey } from './python-installer.js';

function localPackage(): { dir: string; edit: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'splice-key-'));
  const file = join(dir, 'mod.py');
  writeFileSync(file, 'x = 1\n');
  utimesSync(file, 1_000, 1_000);
  return {
    dir,
    edit: () => {
      writeFileSync(file, 'x = 22\n');
      utimesSync(file, 2_000, 2_000);
    },
  };
}

const spec = (pkg: string) =>
  ({ name: 'mod', package: pkg, dependencies: [], installScripts: false }) as unknown as ModuleSpec;

describe('install keys', () => {
  it('change when a local Python package is edited', () => {
    const local = localPackage();
    const before = pythonInstallKey(spec(`file:${local.dir}`), '3.11.2');
    expect(pythonInstallKey(spec(`file:${local.dir}`), '3.11.2')).toBe(before);
    local.edit();
    expect(pythonInstallKey(spec(`file:${local.dir}`), '3.11.2')).not.toBe(before);
  });

  it('change when a local npm package is edited', () => {
    const local = localPackage();
    const before = installKey(spec(`file:${local.dir}`));
    local.edit();
    expect(installKey(spec(`file:${local.dir}`))).not.toBe(before);
  });
});
