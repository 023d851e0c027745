/**
 * The Helm chart in k8s/chart, with helm v3 built from the Go module proxy (test/tools/go-tools.sh):
 * it is what `splice-orc chart` generates, `helm lint` passes, and `helm template` renders the same
 * objects as the manifests' code (what k8s/ holds and `init` applies) for the same values, the
 * defaults and others; values it cannot take are refused with a message naming them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  AUTH_SECRET,
  chartFiles,
  DEFAULT_IMAGE,
  type ManifestOptions,
  manifestsYaml,
} from '@splice-orc/pod-manager/kubernetes';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from './harness.js';

const chartDir = join(repoRoot, 'k8s/chart');
const repoModules = JSON.parse(readFileSync(join(repoRoot, 'config/config.json'), 'utf8')).module_config;
let helm: string;

beforeAll(() => {
  // Built once from the Go module proxy (minutes cold), then cached in ~/.cache.
  helm = execFileSync('bash', [join(repoRoot, 'test/tools/go-tools.sh'), 'path', 'helm'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}, 30 * 60_000);

function runHelm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  // HOME elsewhere: helm keeps its own config and cache there; none of the user's is read.
  const home = mkdtempSync(join(tmpdir(), 'splice-helm-home-'));
  const r = spawnSync(helm, args, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH, HOME: home, XDG_CACHE_HOME: join(home, 'cache') },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

type K8sObject = {
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: any };
  [k: string]: any;
};

function documents(yaml: string): K8sObject[] {
  return parseAllDocuments(yaml)
    .map((d) => d.toJSON() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** `helm template` with the values, as objects. */
function render(values: object, namespace = 'splice-orc'): K8sObject[] {
  const file = join(mkdtempSync(join(tmpdir(), 'splice-values-')), 'values.json');
  writeFileSync(file, JSON.stringify(values));
  const r = runHelm(['template', 'splice-orc', chartDir, '--namespace', namespace, '--values', file]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return documents(r.stdout);
}

const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/**
 * Objects compared as the API server would see them: config.json as JSON (the chart writes
 * module_config with Helm's toJson), and the config hash checked apart (the chart hashes its
 * rendered ConfigMap).
 */
function comparable(objects: K8sObject[]): K8sObject[] {
  return objects
    .map((o) => {
      const copy = structuredClone(o);
      if (copy.kind === 'ConfigMap') copy.data['config.json'] = JSON.parse(copy.data['config.json']);
      if (copy.kind === 'Deployment') {
        const annotations = copy.spec.template.metadata.annotations;
        expect(annotations['splice-orc.dev/config-sha256']).toMatch(/^[0-9a-f]{64}$/);
        annotations['splice-orc.dev/config-sha256'] = 'hash';
      }
      return copy;
    })
    .sort((a, b) => key(a).localeCompare(key(b)));
}

function fromCode(o: ManifestOptions): K8sObject[] {
  return documents(manifestsYaml(o));
}

describe('the Helm chart (k8s/chart)', () => {
  it('is exactly what `splice-orc chart` generates', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((f) =>
        statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)],
      );
    const onDisk = new Map(files(chartDir).map((f) => [relative(chartDir, f), readFileSync(f, 'utf8')]));
    expect(onDisk).toEqual(chartFiles(readFileSync(join(repoRoot, 'k8s/monitoring/rules.yml'), 'utf8')));
  });

  it('passes helm lint --strict', () => {
    const r = runHelm(['lint', '--strict', chartDir]);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.status).toBe(0);
  });

  it("renders with its defaults and config/config.json's modules the objects of k8s/, plus the token Secret it makes", () => {
    const rendered = render({ createNamespace: true, moduleConfig: repoModules });
    const secret = rendered.find((o) => o.kind === 'Secret');
    expect(secret?.metadata.name).toBe(AUTH_SECRET);
    expect(Buffer.from(secret?.data.token, 'base64').toString()).toMatch(/^[A-Za-z0-9]{48}$/);
    const code = fromCode({ namespace: 'splice-orc', image: DEFAULT_IMAGE, modules: repoModules });
    expect(comparable(rendered.filter((o) => o.kind !== 'Secret'))).toEqual(comparable(code));
    // The same objects as the files of k8s/.
    const k8sDir = join(repoRoot, 'k8s');
    const k8s = readdirSync(k8sDir)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .flatMap((f) => documents(readFileSync(join(k8sDir, f), 'utf8')));
    expect(comparable(k8s)).toEqual(comparable(code));
  });

  it('renders other values as the manifests code makes them: namespace, images, resources, modules, an existing Secret', () => {
    const modules = {
      lodash: { package: 'lodash@4', lib_cpu_req: '250m' },
      prebuilt: { package: 'prebuilt@1', image: 'registry.example/prebuilt:7' },
    };
    const resources = { requests: { cpu: '1', memory: '512Mi' }, limits: { cpu: '2', memory: '2Gi' } };
    const rendered = render(
      {
        image: { repository: 'registry.example/splice-orc', tag: '2.0.1' },
        pythonImage: { repository: 'registry.example/splice-orc-python', tag: '2.0.1' },
        auth: { existingSecret: 'tenant-token' },
        resources,
        moduleConfig: modules,
      },
      'tenant-a',
    );
    expect(rendered.some((o) => o.kind === 'Secret' || o.kind === 'Namespace')).toBe(false);
    const code = fromCode({
      namespace: 'tenant-a',
      image: 'registry.example/splice-orc:2.0.1',
      pythonImage: 'registry.example/splice-orc-python:2.0.1',
      modules,
      resources,
      authSecret: 'tenant-token',
    }).filter((o) => o.kind !== 'Namespace');
    expect(comparable(rendered)).toEqual(comparable(code));
  });

  it('leaves the NetworkPolicies out when asked, and puts the state on a claim', () => {
    const rendered = render({
      networkPolicy: { enabled: false },
      stateVolume: { enabled: true, size: '2Gi' },
    });
    expect(rendered.filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
    const claim = rendered.find((o) => o.kind === 'PersistentVolumeClaim');
    expect(claim?.spec).toEqual({
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '2Gi' } },
    });
    const deployment = rendered.find((o) => o.kind === 'Deployment');
    expect(deployment?.spec.strategy).toEqual({ type: 'Recreate' });
    expect(deployment?.spec.template.spec.volumes).toContainEqual({
      name: 'state',
      persistentVolumeClaim: { claimName: claim?.metadata.name },
    });
    const config = JSON.parse(rendered.find((o) => o.kind === 'ConfigMap')?.data['config.json']);
    const mount = deployment?.spec.template.spec.containers[0].volumeMounts.find(
      (m: any) => m.name === 'state',
    );
    expect(config.server.state_file).toBe(`${mount.mountPath}/state.json`);
  });

  it('has no modules by default, so a moduleConfig given is all there is', () => {
    const config = (objects: K8sObject[]) =>
      JSON.parse(objects.find((o) => o.kind === 'ConfigMap')?.data['config.json']).module_config;
    expect(config(render({}))).toEqual({});
    const mine = { numpy: { runtime: 'python', package: 'numpy>=2' } };
    expect(config(render({ moduleConfig: mine }))).toEqual(mine);
  });

  it('hashes the config into the pod template, so a changed moduleConfig restarts the pod-manager', () => {
    const hash = (objects: K8sObject[]) =>
      objects.find((o) => o.kind === 'Deployment')?.spec.template.metadata.annotations[
        'splice-orc.dev/config-sha256'
      ];
    const a = hash(render({}));
    expect(hash(render({}))).toBe(a);
    expect(hash(render({ moduleConfig: { lodash: { package: 'lodash@4.17' } } }))).not.toBe(a);
    expect(a).not.toBe(createHash('sha256').update('').digest('hex'));
  });

  it('makes the PrometheusRule of k8s/monitoring and a ServiceMonitor that scrapes with the token, when asked', () => {
    expect(render({}).filter((o) => o.kind === 'PrometheusRule' || o.kind === 'ServiceMonitor')).toEqual([]);
    const rendered = render(
      {
        monitoring: {
          prometheusRule: { enabled: true },
          serviceMonitor: { enabled: true },
          labels: { release: 'kps' },
        },
        auth: { existingSecret: 'tenant-token' },
      },
      'tenant-a',
    );
    const rule = rendered.find((o) => o.kind === 'PrometheusRule');
    const plain = parseAllDocuments(
      readFileSync(join(repoRoot, 'k8s/monitoring/rules.yml'), 'utf8'),
    )[0]?.toJSON();
    // The same alerts, their {{ $labels }} templates kept for Prometheus.
    expect(rule?.spec.groups).toEqual(plain.groups);
    expect(JSON.stringify(rule?.spec)).toContain('{{ $labels.module }}');
    expect(rule?.metadata).toMatchObject({ namespace: 'tenant-a', labels: { release: 'kps' } });
    const monitor = rendered.find((o) => o.kind === 'ServiceMonitor');
    const service = rendered.find((o) => o.kind === 'Service');
    expect(monitor?.spec.selector.matchLabels).toEqual(service?.spec.selector);
    expect(monitor?.spec.endpoints).toEqual([
      {
        port: service?.spec.ports[0].name,
        path: '/metrics',
        interval: '30s',
        authorization: { type: 'Bearer', credentials: { name: 'tenant-token', key: 'token' } },
      },
    ]);
    // Prometheus names the job after the Service: the job the alert rules expect.
    expect(service?.metadata.name).toBe('splice-orc-pod-manager');
    expect(JSON.stringify(plain)).toContain('job=\\"splice-orc-pod-manager\\"');
  });

  it('refuses values it cannot take, naming them', () => {
    const refused = (args: string[]) => {
      const r = runHelm(['template', 'splice-orc', chartDir, ...args]);
      expect(r.status).toBe(1);
      return r.stderr;
    };
    expect(refused(['--set', 'imagee.tag=1'])).toMatch(/imagee/);
    expect(refused(['--set', 'auth.token=short'])).toContain('auth.token must be 16 characters or more');
    expect(refused(['--set', 'stateVolume.size=lots'])).toMatch(/stateVolume.*size|size.*pattern/s);
    expect(refused(['--set', 'namespace=Not_A_Namespace'])).toMatch(/namespace/);
  });
});
