import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from './config.js';

/** The shape of a jac-splice-orc config.json, as its users wrote it. */
const jacSpliceOrcConfig = {
  kubernetes: {
    namespace: 'jac-splice-orc',
    service_account_name: 'jac-orc-sa',
    pod_manager: {
      deployment_name: 'pod-manager-deployment',
      service_account_name: 'jac-orc-sa',
      container_name: 'pod-manager',
      image_name: 'ashishmahendra/jac-splice-orc:0.1.8',
      container_port: 8000,
      service_name: 'pod-manager-service',
      service_type: 'LoadBalancer',
      env_vars: { SERVICE_TYPE: 'pod_manager', NAMESPACE: 'jac-splice-orc' },
      resources: { requests: { memory: '512Mi' }, limits: { memory: '2Gi' } },
    },
  },
  module_config: {
    numpy: { lib_mem_size_req: '100Mi', dependency: [], lib_cpu_req: '500m', load_type: 'remote' },
  },
  environment: { POD_MANAGER_URL: '' },
};

function problemsOf(input: unknown): readonly string[] {
  try {
    parseConfig(input);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('config was accepted');
}

describe('config', () => {
  it('loads a config written for jac-splice-orc and fills in defaults', () => {
    const config = parseConfig(jacSpliceOrcConfig);
    expect(config.modules.get('numpy')).toMatchObject({
      package: 'numpy',
      loadType: 'remote',
      memory: '100Mi',
    });
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8000, backend: 'local' });
  });

  it('is frozen', () => {
    const config = parseConfig(jacSpliceOrcConfig);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.modules.get('numpy'))).toBe(true);
    expect(Object.isFrozen(config.raw.module_config.numpy)).toBe(true);
  });

  it('lists every problem with its JSON path in one error', () => {
    const problems = problemsOf({
      module_config: {
        numpy: { lib_cpu_req: 'lots', load_type: 'sideways', dependency: 'scipy', colour: 'red' },
        'bad name!': {},
      },
      server: { port: 70000 },
      extra: true,
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        "/: unknown key 'extra'",
        "/module_config/numpy: unknown key 'colour'",
        "/module_config/numpy/lib_cpu_req: 'lots' is not a Kubernetes quantity, e.g. 500m",
        '/module_config/numpy/load_type: must be one of remote, local, auto',
        '/module_config/numpy/dependency: must be array',
        '/server/port: must be <= 65535',
        expect.stringContaining("invalid module name 'bad name!'"),
      ]),
    );
  });

  it("refuses what pip or npm would read as an option; loads the seed's modules as Python modules", () => {
    expect(
      [
        ...problemsOf({
          module_config: {
            np: {
              runtime: 'python',
              package: '--index-url=http://127.0.0.1:9/',
              dependency: ['-r/etc/passwd'],
            },
            lo: { package: 'lodash\n--registry=x' },
          },
        }),
      ].sort(),
    ).toEqual([
      "/module_config/lo/package: 'lodash\n--registry=x' is not a package spec or requirement (it may not start with - or hold control characters)",
      "/module_config/np/dependency/0: '-r/etc/passwd' is not a package spec or requirement (it may not start with - or hold control characters)",
      "/module_config/np/package: '--index-url=http://127.0.0.1:9/' is not a package spec or requirement (it may not start with - or hold control characters)",
    ]);
    // The seed's four modules, as Python modules, load (a local one runs remote: see placement).
    const seed = parseConfig({
      module_config: {
        numpy: {
          runtime: 'python',
          lib_mem_size_req: '100Mi',
          dependency: [],
          lib_cpu_req: '500m',
          load_type: 'remote',
        },
        pandas: {
          runtime: 'python',
          lib_mem_size_req: '200Mi',
          dependency: ['numpy', 'dateutil'],
          load_type: 'local',
        },
        transformers: {
          runtime: 'python',
          lib_mem_size_req: '2000Mi',
          dependency: ['torch'],
          load_type: 'remote',
        },
        ollama: { runtime: 'python', lib_mem_size_req: '300Mi', dependency: [], load_type: 'remote' },
      },
    });
    expect([...seed.modules.values()].map((m) => [m.name, m.runtime, m.package])).toEqual([
      ['numpy', 'python', 'numpy'],
      ['pandas', 'python', 'pandas'],
      ['transformers', 'python', 'transformers'],
      ['ollama', 'python', 'ollama'],
    ]);
  });

  it('requires module_config', () => {
    expect(problemsOf({})).toContain("/: missing key 'module_config'");
  });

  it('resolves file: package specs against the config file folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'splice-config-'));
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ module_config: { calc: { package: 'file:./fixtures/calc' } } }));
    expect(loadConfig(path).modules.get('calc')?.package).toBe(`file:${join(dir, 'fixtures/calc')}`);
  });

  it('names the file when it is not JSON or missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'splice-config-'));
    writeFileSync(join(dir, 'broken.json'), '{ nope');
    expect(() => loadConfig(join(dir, 'broken.json'))).toThrow(/broken\.json:\n {2}- not valid JSON/);
    expect(() => loadConfig(join(dir, 'absent.json'))).toThrow(/cannot read the file/);
  });
});
