/**
 * Regression: a runtime config saved by an earlier version (or before a limit was added) that no
 * longer validates stopped the pod-manager from starting at all. The file's config stands and the
 * saved change is ignored, with a warning.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { parseConfig } from '../config.js';

describe('a saved runtime config that no longer validates', () => {
  it('is ignored with a warning; the module keeps the config of the file', async () => {
    const stateFile = join(mkdtempSync(join(tmpdir(), 'splice-state-')), 'state.json');
    writeFileSync(stateFile, JSON.stringify({ modules: { calc: { min_replicas: 1000, dependency: [] } } }));
    const warnings: string[] = [];
    const app = await buildApp(
      parseConfig({ module_config: { calc: { max_replicas: 2 } }, server: { state_file: stateFile } }),
      {
        logger: {
          level: 'warn',
          stream: { write: (line: string) => warnings.push(JSON.parse(line).msg) },
        },
      },
    );
    expect((await app.inject({ method: 'GET', url: '/modules/calc/config' })).json()).toMatchObject({
      max_replicas: 2,
      min_replicas: 0,
    });
    expect(warnings).toContain('ignoring a saved runtime config that no longer validates');
    await app.close();
  });
});
