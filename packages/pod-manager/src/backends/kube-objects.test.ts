import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { deploymentFor, type KubeObjectOptions, objectNameFor, serviceFor } from './kube-objects.js';
import { coresFromQuantity } from './kube-usage.js';

const options: KubeObjectOptions = {
  namespace: 'ns',
  moduleImage: 'splice-orc:1',
  pythonModuleImage: 'splice-orc-python:1',
  imagePullPolicy: 'IfNotPresent',
  leaseMs: 60_000,
  graceMs: 5_000,
  maxPayloadBytes: 1024,
  startTimeoutMs: 300_000,
  liveness: { intervalMs: 10_000, failures: 3 },
};
const specOf = (name: string, module: object = {}) =>
  parseConfig({ module_config: { [name]: module } }).modules.get(name) as NonNullable<
    ReturnType<ReturnType<typeof parseConfig>['modules']['get']>
  >;

describe('objectNameFor', () => {
  it.each([
    ['lodash', /^splice-lodash-[0-9a-f]{8}$/],
    ['@acme/big.lib', /^splice-acme-big-lib-[0-9a-f]{8}$/],
    ['lodash/fp', /^splice-lodash-fp-[0-9a-f]{8}$/],
    ['a'.repeat(214), /^splice-a{40}-[0-9a-f]{8}$/],
  ])('gives %s a readable DNS label', (module, shape) => {
    const name = objectNameFor(module);
    expect(name).toMatch(shape);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  });

  it('tells apart names that slug alike', () => {
    expect(objectNameFor('a.b')).not.toBe(objectNameFor('a-b'));
    expect(objectNameFor('@x/y')).not.toBe(objectNameFor('x-y'));
  });
});

describe('deploymentFor', () => {
  it('gives the same spec the same hash, and a changed spec another', () => {
    const a = deploymentFor(specOf('m', { lib_cpu_req: '100m' }), 1, options, 'a-secret-for-the-tests-000');
    const again = deploymentFor(
      specOf('m', { lib_cpu_req: '100m' }),
      3,
      options,
      'a-secret-for-the-tests-000',
    );
    const changed = deploymentFor(
      specOf('m', { lib_cpu_req: '200m' }),
      1,
      options,
      'a-secret-for-the-tests-000',
    );
    const hash = (d: typeof a) => d.metadata?.annotations?.['splice-orc.dev/config-hash'];
    // Replicas are not config: scaling does not roll.
    expect(hash(again)).toBe(hash(a));
    expect(hash(changed)).not.toBe(hash(a));
    // The pods carry it too, so that a start judges only pods of the current config.
    expect(a.spec?.template.metadata?.annotations?.['splice-orc.dev/config-hash']).toBe(hash(a));
  });

  it('installs with an init container unless the module has an image', () => {
    const installed = deploymentFor(
      specOf('m', { package: 'm@1', dependency: ['dep@2'] }),
      1,
      options,
      'a-secret-for-the-tests-000',
    );
    const init = installed.spec?.template.spec?.initContainers?.[0];
    expect(init?.image).toBe('splice-orc:1');
    expect(init?.env).toContainEqual({ name: 'MODULE_DEPENDENCIES', value: '["dep@2"]' });
    const prebuilt = deploymentFor(specOf('m', { image: 'm:1' }), 1, options, 'a-secret-for-the-tests-000');
    expect(prebuilt.spec?.template.spec?.initContainers).toBeUndefined();
    expect(prebuilt.spec?.template.spec?.volumes?.map((v) => v.name)).toEqual(['tmp']);
    expect(installed.spec?.template.spec?.volumes?.map((v) => v.name)).toEqual([
      'tmp',
      'modules',
      'install-tmp',
    ]);
    // Only pods that install are let out to npm registries (a NetworkPolicy selects this label).
    expect(installed.spec?.template.metadata?.labels?.['splice-orc.dev/install']).toBe('npm');
    expect(prebuilt.spec?.template.metadata?.labels?.['splice-orc.dev/install']).toBeUndefined();
  });

  it('limits the memory of the server and the installer and the size of the install volumes by default', () => {
    const pod = deploymentFor(specOf('m'), 1, options, 'a-secret-for-the-tests-000').spec?.template.spec;
    expect(pod?.containers[0]?.resources).toEqual({ limits: { memory: '512Mi' } });
    // The installer asks for what the server gets (its limit), so installing reserves nothing more.
    expect(pod?.initContainers?.[0]?.resources).toEqual({
      requests: { memory: '512Mi' },
      limits: { memory: '1Gi' },
    });
    expect(pod?.volumes).toEqual([
      { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
      { name: 'modules', emptyDir: { sizeLimit: '1Gi' } },
      { name: 'install-tmp', emptyDir: { sizeLimit: '1Gi' } },
    ]);
  });

  it("takes a module's own limits from module_config; the installer never requests more than its limit", () => {
    const spec = specOf('m', {
      lib_cpu_req: '500m',
      lib_mem_size_req: '2Gi',
      lib_mem_limit: '4Gi',
      install_mem_limit: '1536Mi',
      install_size_limit: '5Gi',
    });
    const pod = deploymentFor(spec, 1, options, 'a-secret-for-the-tests-000').spec?.template.spec;
    expect(pod?.containers[0]?.resources).toEqual({
      requests: { cpu: '500m', memory: '2Gi' },
      limits: { memory: '4Gi' },
    });
    expect(pod?.initContainers?.[0]?.resources).toEqual({
      requests: { cpu: '500m', memory: '1536Mi' },
      limits: { memory: '1536Mi' },
    });
    expect(pod?.volumes?.slice(1).map((v) => v.emptyDir?.sizeLimit)).toEqual(['5Gi', '5Gi']);
  });

  it('leaves out the liveness probe when liveness checks are off', () => {
    const d = deploymentFor(
      specOf('m'),
      1,
      { ...options, liveness: { intervalMs: 0, failures: 3 } },
      'a-secret-for-the-tests-000',
    );
    expect(d.spec?.template.spec?.containers[0]?.livenessProbe).toBeUndefined();
  });

  it('places pods with the configured nodeSelector, and leaves the template as it was without one', () => {
    const secret = 'a-secret-for-the-tests-000';
    const plain = deploymentFor(specOf('m'), 1, options, secret);
    const empty = deploymentFor(specOf('m'), 1, { ...options, nodeSelector: {} }, secret);
    const placed = deploymentFor(specOf('m'), 1, { ...options, nodeSelector: { pool: 'modules' } }, secret);
    expect(plain.spec?.template.spec?.nodeSelector).toBeUndefined();
    expect(empty.spec?.template).toEqual(plain.spec?.template);
    expect(placed.spec?.template.spec?.nodeSelector).toEqual({ pool: 'modules' });
    expect(placed.metadata?.annotations).not.toEqual(plain.metadata?.annotations);
  });

  it('selects the same pods with the Service as with the Deployment', () => {
    const spec = specOf('@scope/pkg');
    expect(serviceFor(spec, options).spec?.selector).toEqual(
      deploymentFor(spec, 1, options, 'a-secret-for-the-tests-000').spec?.selector.matchLabels,
    );
  });
});

describe('coresFromQuantity', () => {
  it.each([
    ['250m', 0.25],
    ['1', 1],
    ['1500000n', 0.0015],
    ['20u', 0.00002],
    ['bogus', 0],
  ])('reads %s as %d cores', (quantity, cores) => {
    expect(coresFromQuantity(quantity)).toBeCloseTo(cores, 9);
  });
});

describe('deploymentFor: what the module-server is started with', () => {
  const envOf = (d: ReturnType<typeof deploymentFor>, container = 'module-server') =>
    Object.fromEntries(
      [...(d.spec?.template.spec?.containers ?? []), ...(d.spec?.template.spec?.initContainers ?? [])]
        .find((c) => c.name === container)
        ?.env?.map((e) => [e.name, e.value ?? e.valueFrom]) ?? [],
    );

  it('carries the secret as a plain value, outside the config hash', () => {
    const one = deploymentFor(specOf('m'), 1, options, 'first-secret-0123456789');
    const two = deploymentFor(specOf('m'), 1, options, 'second-secret-0123456789');
    expect(envOf(one).SPLICE_SERVER_SECRET).toBe('first-secret-0123456789');
    expect(envOf(two).SPLICE_SERVER_SECRET).toBe('second-secret-0123456789');
    expect(one.metadata?.annotations).toEqual(two.metadata?.annotations);
  });

  it('disallows code generation unless the module opts in, and passes the reference-table limits', () => {
    const limits = { maxObjectsPerSession: 7, maxObjects: 8, maxSessions: 9 };
    const plain = envOf(deploymentFor(specOf('m'), 1, { ...options, limits }, 'secret-0123456789abc'));
    expect(plain).toMatchObject({
      NODE_OPTIONS: '--disallow-code-generation-from-strings',
      SPLICE_MAX_OBJECTS_PER_SESSION: '7',
      SPLICE_MAX_OBJECTS: '8',
      SPLICE_MAX_SESSIONS: '9',
      MODULE_NAME: 'm',
      HOST: '0.0.0.0',
      PORT: '50051',
    });
    expect(plain.SPLICE_CODE_GENERATION).toBeUndefined();
    const opted = envOf(
      deploymentFor(specOf('m', { allow_code_generation: true }), 1, options, 'secret-0123456789abc'),
    );
    expect(opted.NODE_OPTIONS).toBeUndefined();
    expect(opted.SPLICE_CODE_GENERATION).toBe('allow');
  });

  it('opens the callback port of a Node server (a Python server takes callbacks on its one port)', () => {
    const container = (d: ReturnType<typeof deploymentFor>) =>
      d.spec?.template.spec?.containers.find((c) => c.name === 'module-server');
    const node = deploymentFor(specOf('m'), 1, options, 'secret-0123456789abc');
    expect(envOf(node).CALLBACK_PORT).toBe('50052');
    expect(container(node)?.ports?.map((p) => [p.name, p.containerPort])).toEqual([
      ['grpc', 50051],
      ['callbacks', 50052],
    ]);
    const python = deploymentFor(specOf('p', { runtime: 'python' }), 1, options, 'secret-0123456789abc');
    expect(envOf(python).CALLBACK_PORT).toBeUndefined();
    expect(container(python)?.ports?.map((p) => p.name)).toEqual(['grpc']);
  });

  it('runs install scripts only for a module that opts in', () => {
    const install = (module: object) =>
      envOf(deploymentFor(specOf('m', module), 1, options, 'secret-0123456789abc'), 'install');
    expect(install({}).MODULE_INSTALL_SCRIPTS).toBeUndefined();
    expect(install({ install_scripts: true }).MODULE_INSTALL_SCRIPTS).toBe('1');
  });

  it('runs a Python module on the Python image: pip installs it, no Node flags, no bytecode on the read-only root', () => {
    const spec = specOf('numpy', { runtime: 'python', package: 'numpy>=2', dependency: ['scipy'] });
    const d = deploymentFor(spec, 1, options, 'secret-0123456789abc');
    const pod = d.spec?.template.spec;
    const server = envOf(d);
    const install = envOf(d, 'install');
    expect(pod?.containers[0]?.image).toBe('splice-orc-python:1');
    expect(pod?.containers[0]?.command).toBeUndefined();
    expect(pod?.initContainers?.[0]?.image).toBe('splice-orc-python:1');
    expect(pod?.initContainers?.[0]?.command).toEqual(['python', '-m', 'splice_module_server.install']);
    expect(server).toMatchObject({
      MODULE_NAME: 'numpy',
      MODULE_RESOLVE_FROM: '/modules/install',
      PYTHONDONTWRITEBYTECODE: '1',
      SPLICE_SERVER_SECRET: 'secret-0123456789abc',
    });
    expect(server.NODE_OPTIONS).toBeUndefined();
    expect(server.SERVICE_TYPE).toBeUndefined();
    expect(install).toMatchObject({ MODULE_PACKAGE: 'numpy>=2', MODULE_DEPENDENCIES: '["scipy"]' });
    expect(install.npm_config_cache).toBeUndefined();
    expect(d.spec?.template.metadata?.labels?.['splice-orc.dev/install']).toBe('pypi');
    // The same module on Node would be another pod template: changing the runtime rolls.
    const node = deploymentFor(
      specOf('numpy', { package: 'numpy>=2', dependency: ['scipy'] }),
      1,
      options,
      's',
    );
    expect(node.metadata?.annotations?.['splice-orc.dev/config-hash']).not.toBe(
      d.metadata?.annotations?.['splice-orc.dev/config-hash'],
    );
    // A module with its own image runs that, whatever its runtime.
    const own = deploymentFor(specOf('numpy', { runtime: 'python', image: 'np:1' }), 1, options, 's');
    expect(own.spec?.template.spec?.containers[0]?.image).toBe('np:1');
  });
});
