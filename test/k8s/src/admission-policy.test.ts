/**
 * The admission policy on the pod-manager's service account (kube-admission-policy.ts, applied by
 * `splice-orc init`), against a real kube-apiserver with its default admission plugins: RBAC lets
 * the account create any Deployment, the policy admits only module Deployments as the pod-manager
 * builds them. What a pod-manager holding a token of the account creates is admitted; a Deployment
 * that breaks one rule is refused with that rule's message, while the admin may create it. Requests
 * are dry runs unless the pod-manager makes them.
 */
import { PatchStrategy, setHeaderOptions, type V1Deployment, type V1Service } from '@kubernetes/client-node';
import { AUTH_SECRET, initCluster } from '@splice-orc/pod-manager/kubernetes';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  clientsFor,
  eventually,
  http,
  kubeconfig,
  kubectl,
  moduleDeployments,
  modules,
  serviceAccountKubeconfig,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';

type Clients = ReturnType<typeof clientsFor>;
const admin = adminApi();
const prebuilt = { package: 'lodash@4', image: 'registry.test/prebuilt:1' };
let namespace: string;
let saConfig: string;
let asPodManager: Clients;
/** lodash's Deployment as the pod-manager created it, under another name. */
let probe: V1Deployment;

/** 'admitted', or the refusal's status code and the API server's message. */
async function outcome(request: Promise<unknown>): Promise<string> {
  try {
    await request;
    return 'admitted';
  } catch (error) {
    const { code, body } = error as { code?: number; body?: unknown };
    const status = typeof body === 'string' ? JSON.parse(body) : body;
    return `${code}: ${(status as { message?: string } | undefined)?.message ?? String(error)}`;
  }
}

const createDeployment = (api: Clients, body: V1Deployment) =>
  outcome(api.apps.createNamespacedDeployment({ namespace, body, dryRun: 'All' }));
const createService = (api: Clients, body: V1Service) =>
  outcome(api.core.createNamespacedService({ namespace, body, dryRun: 'All' }));

beforeAll(async () => {
  namespace = `policy-${Date.now().toString(36)}`;
  await initCluster({
    namespace,
    image: 'splice-orc:test',
    modules: { prebuilt },
    kubeconfig,
    timeoutMs: 60_000,
    log: () => undefined,
  });
  saConfig = await serviceAccountKubeconfig(namespace);
  asPodManager = clientsFor(saConfig);
  // A new policy takes a moment (seconds on a loaded machine) to reach the API server's admission
  // plugin: wait until an unlabelled Deployment and a NodePort Service are refused.
  const unlabelled: V1Deployment = {
    metadata: { name: 'policy-in-force' },
    spec: {
      selector: { matchLabels: { probe: 'x' } },
      template: { metadata: { labels: { probe: 'x' } }, spec: { containers: [{ name: 'c', image: 'x' }] } },
    },
  };
  const nodePort: V1Service = {
    metadata: { name: 'policy-in-force' },
    spec: { type: 'NodePort', ports: [{ port: 1 }] },
  };
  await eventually(
    async () =>
      (await createDeployment(asPodManager, unlabelled)) !== 'admitted' &&
      (await createService(asPodManager, nodePort)) !== 'admitted',
    30_000,
    'the admission policies to be in force',
  );
});

const RULE = {
  labels:
    /ValidatingAdmissionPolicy .* denied request: the pod-manager may only write Deployments labelled app.kubernetes.io\/managed-by=splice-orc and app.kubernetes.io\/component=module-server/,
  images:
    /denied request: module containers may only run the configured images: registry.test\/prebuilt:1, splice-orc-python:0.1.0, splice-orc:test /,
  secrets: /denied request: module pods may not read Secrets or service-account tokens/,
  token: /denied request: module pods must set automountServiceAccountToken: false/,
  host: /denied request: module pods may not use the host's network, PID or IPC namespace, host ports or hostPath volumes/,
  volumes: /denied request: module pods may only have emptyDir volumes/,
  security:
    /denied request: every container and init container must set runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true/,
  services: /denied request: the pod-manager may only write Services of type ClusterIP \(or headless\)/,
  pods: /denied request: the pod-manager may only change the annotations of module pods/,
};

const pod = (d: V1Deployment) => d.spec?.template.spec ?? { containers: [] };
const server = (d: V1Deployment) => pod(d).containers[0] ?? { name: 'missing' };
const installer = (d: V1Deployment) => pod(d).initContainers?.[0] ?? { name: 'missing' };
const addVolume = (d: V1Deployment, volume: object) => {
  pod(d).volumes = [...(pod(d).volumes ?? []), { name: 'extra', ...volume }];
};
const secure = (c: ReturnType<typeof server>) => {
  c.securityContext ??= {};
  return c.securityContext;
};

/** Deployments that each break one rule: what they do, how, and the rule's message. */
const broken: Array<[string, (d: V1Deployment) => void, RegExp]> = [
  [
    'is not labelled managed-by splice-orc',
    (d) => delete d.metadata?.labels?.['app.kubernetes.io/managed-by'],
    RULE.labels,
  ],
  [
    'runs pods labelled as the pod-manager',
    (d) => {
      const labels = d.spec?.template.metadata?.labels ?? {};
      labels['app.kubernetes.io/name'] = 'splice-orc-pod-manager';
    },
    RULE.labels,
  ],
  ['serves with another image', (d) => (server(d).image = 'registry.test/other:1'), RULE.images],
  ['installs with another image', (d) => (installer(d).image = 'busybox:1'), RULE.images],
  ['mounts the token Secret', (d) => addVolume(d, { secret: { secretName: AUTH_SECRET } }), RULE.secrets],
  [
    'mounts the token Secret projected',
    (d) => addVolume(d, { projected: { sources: [{ secret: { name: AUTH_SECRET } }] } }),
    RULE.secrets,
  ],
  [
    'mounts a projected service-account token',
    (d) => addVolume(d, { projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } }),
    RULE.secrets,
  ],
  [
    'reads the token Secret into a variable',
    (d) => {
      server(d).env?.push({ name: 'T', valueFrom: { secretKeyRef: { name: AUTH_SECRET, key: 'token' } } });
    },
    RULE.secrets,
  ],
  [
    'reads the token Secret into its environment',
    (d) => (installer(d).envFrom = [{ secretRef: { name: AUTH_SECRET } }]),
    RULE.secrets,
  ],
  ['mounts a service-account token', (d) => (pod(d).automountServiceAccountToken = true), RULE.token],
  ['leaves the token mount to the default', (d) => delete pod(d).automountServiceAccountToken, RULE.token],
  ['uses the host network', (d) => (pod(d).hostNetwork = true), RULE.host],
  ['uses the host PID namespace', (d) => (pod(d).hostPID = true), RULE.host],
  ['uses the host IPC namespace', (d) => (pod(d).hostIPC = true), RULE.host],
  ['mounts a host path', (d) => addVolume(d, { hostPath: { path: '/' } }), RULE.host],
  [
    'binds a host port',
    (d) => {
      const [port] = server(d).ports ?? [];
      if (port) port.hostPort = 50051;
    },
    RULE.host,
  ],
  ['mounts a ConfigMap', (d) => addVolume(d, { configMap: { name: 'splice-orc-config' } }), RULE.volumes],
  ['may run its server as root', (d) => delete secure(server(d)).runAsNonRoot, RULE.security],
  [
    'lets the installer gain privileges',
    (d) => (secure(installer(d)).allowPrivilegeEscalation = true),
    RULE.security,
  ],
  ['writes its root file system', (d) => (secure(server(d)).readOnlyRootFilesystem = false), RULE.security],
  ['keeps capabilities', (d) => (secure(server(d)).capabilities = { drop: ['NET_RAW'] }), RULE.security],
  [
    'adds a capability',
    (d) => (secure(installer(d)).capabilities = { drop: ['ALL'], add: ['NET_ADMIN'] }),
    RULE.security,
  ],
  [
    'is privileged',
    (d) => Object.assign(secure(server(d)), { privileged: true, allowPrivilegeEscalation: true }),
    RULE.security,
  ],
];

describe("the admission policy on the pod-manager's service account", () => {
  it('admits the Deployments and Services a pod-manager creates with its token', async () => {
    await using pm = await startClusterPodManager(
      writeClusterConfig({ namespace, kubeconfig: saConfig, modules: { lodash: modules.lodash, prebuilt } }),
    );
    for (const module of ['lodash', 'prebuilt']) {
      const load = await http(`${pm.url}/modules/${module}/load`, { method: 'POST', body: {} });
      expect(load.status, JSON.stringify(load.body)).toBe(200);
    }
    const lodash = (await moduleDeployments(namespace)).find(
      (d) => d.metadata?.annotations?.['splice-orc.dev/module-name'] === 'lodash',
    );
    probe = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'policy-probe', labels: lodash?.metadata?.labels },
      spec: lodash?.spec,
    };
    expect(await createDeployment(asPodManager, probe)).toBe('admitted');
  });

  it('type-checks every rule against the kind it is for, without a warning', async () => {
    const policies =
      (await eventually(
        async () => {
          const list = JSON.parse(await kubectl(['get', 'validatingadmissionpolicy', '-o', 'json']))
            .items as Array<{
            metadata: { name: string; generation: number };
            status?: { observedGeneration?: number; typeChecking?: { expressionWarnings?: unknown[] } };
          }>;
          const ours = list.filter((p) => p.metadata.name.startsWith(`splice-orc-pod-manager.${namespace}.`));
          const checked = ours.every((p) => p.status?.observedGeneration === p.metadata.generation);
          return ours.length === 3 && checked ? ours : undefined;
        },
        20_000,
        'type checking',
      )) ?? [];
    expect(policies.map((p) => p.metadata.name).sort()).toEqual(
      ['deployments', 'pods', 'services'].map((r) => `splice-orc-pod-manager.${namespace}.${r}`),
    );
    for (const p of policies) expect(p.status?.typeChecking?.expressionWarnings ?? []).toEqual([]);
  });

  it.each(broken)(
    'refuses a Deployment that %s with the rule it breaks; the admin may create it',
    async (_, breakIt, rule) => {
      const deployment = structuredClone(probe);
      breakIt(deployment);
      expect(await createDeployment(asPodManager, deployment)).toMatch(new RegExp(`^422: .*${rule.source}`));
      expect(await createDeployment(admin, deployment)).toBe('admitted');
    },
  );

  it("admits only ClusterIP and headless Services labelled as splice-orc's", async () => {
    const labels = {
      'app.kubernetes.io/managed-by': 'splice-orc',
      'app.kubernetes.io/component': 'module-server',
    };
    const service = (spec: V1Service['spec'], withLabels: Record<string, string> = labels): V1Service => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'policy-probe', labels: withLabels },
      spec: { selector: { 'splice-orc.dev/module': 'x' }, ports: [{ port: 50051 }], ...spec },
    });
    expect(await createService(asPodManager, service({ type: 'ClusterIP' }))).toBe('admitted');
    expect(await createService(asPodManager, service({ clusterIP: 'None' }))).toBe('admitted');
    for (const refused of [
      service({ type: 'NodePort' }),
      service({ type: 'LoadBalancer' }),
      service({ type: 'ClusterIP', externalIPs: ['203.0.113.7'] }),
      service({ type: 'ClusterIP' }, { 'app.kubernetes.io/name': 'other' }),
    ]) {
      expect(await createService(asPodManager, refused)).toMatch(RULE.services);
      expect(await createService(admin, refused)).toBe('admitted');
    }
  });

  it('lets the pod-manager change only the annotations of a module pod', async () => {
    const [target] = (
      await admin.core.listNamespacedPod({
        namespace,
        labelSelector: 'app.kubernetes.io/component=module-server',
      })
    ).items;
    const name = target?.metadata?.name ?? '';
    const patch = (api: Clients, body: object, strategy: PatchStrategy = PatchStrategy.MergePatch) =>
      outcome(
        api.core.patchNamespacedPod(
          { name, namespace, body, dryRun: 'All' },
          setHeaderOptions('Content-Type', strategy),
        ),
      );
    const mark = { metadata: { annotations: { 'controller.kubernetes.io/pod-deletion-cost': '-1000' } } };
    const relabel = { metadata: { labels: { 'app.kubernetes.io/name': 'splice-orc-pod-manager' } } };
    const reimage = [{ op: 'replace', path: '/spec/containers/0/image', value: 'registry.test/other:1' }];
    await eventually(
      async () => (await patch(asPodManager, relabel)) !== 'admitted',
      30_000,
      'the pods policy',
    );
    expect(await patch(asPodManager, mark)).toBe('admitted');
    expect(await patch(asPodManager, relabel)).toMatch(RULE.pods);
    expect(await patch(asPodManager, reimage, PatchStrategy.JsonPatch)).toMatch(RULE.pods);
    expect(await patch(admin, relabel)).toBe('admitted');
    expect(await patch(admin, reimage, PatchStrategy.JsonPatch)).toBe('admitted');
  });
});
