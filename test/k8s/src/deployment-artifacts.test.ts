/**
 * The deployment artifacts against a real kube-apiserver: k8s/ is what `splice-orc manifests`
 * generates and `kubectl apply -k k8s/` is accepted; its NetworkPolicies select the pods they are
 * for; `splice-orc init` applies the same objects idempotently; and a pod-manager holding only its
 * Role's permissions (a kubeconfig from its service account's token, under the admission policy)
 * does all its work, while a verb the Role lacks is refused.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadAllYaml, type V1NetworkPolicy } from '@kubernetes/client-node';
import {
  AUTH_SECRET,
  initCluster,
  POD_MANAGER,
  podManagerManifests,
} from '@splice-orc/pod-manager/kubernetes';
import { describe, expect, it } from 'vitest';
import {
  adminApi,
  clientsFor,
  createNamespace,
  eventually,
  http,
  kubeconfig,
  kubectl,
  moduleDeployments,
  modules,
  repoRoot,
  serviceAccountKubeconfig,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';

const api = adminApi();
const k8sDir = join(repoRoot, 'k8s');
const cli = join(repoRoot, 'packages/pod-manager/dist/cli.js');
const repoModules = JSON.parse(readFileSync(join(repoRoot, 'config/config.json'), 'utf8')).module_config;

describe('deployment artifacts', () => {
  it('k8s/ holds exactly what `splice-orc manifests` generates from config/config.json', () => {
    const files = readdirSync(k8sDir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    const onDisk = files.flatMap((f) => loadAllYaml(readFileSync(join(k8sDir, f), 'utf8')));
    const generated = podManagerManifests({
      namespace: 'splice-orc',
      image: 'splice-orc:0.1.0',
      modules: repoModules,
    });
    expect(onDisk.sort(byKindAndName)).toEqual(generated.sort(byKindAndName));
    const kustomization = readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8');
    for (const f of files) expect(kustomization).toContain(`- ${f}`);
  });

  it('`kubectl apply -k k8s/` is accepted by the API server, twice', async () => {
    const first = await kubectl(['apply', '-k', k8sDir]);
    expect(first).toMatch(/deployment.apps\/splice-orc-pod-manager (created|configured|unchanged)/);
    for (const policy of [
      'splice-orc-module-servers',
      'splice-orc-module-installs',
      'splice-orc-pod-manager',
    ]) {
      expect(first).toMatch(
        new RegExp(`networkpolicy.networking.k8s.io/${policy} (created|configured|unchanged)`),
      );
    }
    for (const resource of ['deployments', 'services', 'pods']) {
      for (const kind of ['validatingadmissionpolicy', 'validatingadmissionpolicybinding']) {
        expect(first).toMatch(
          new RegExp(
            `${kind}.admissionregistration.k8s.io/splice-orc-pod-manager.splice-orc.${resource} (created|configured|unchanged)`,
          ),
        );
      }
    }
    const again = await kubectl(['apply', '-k', k8sDir]);
    expect(again).toMatch(/role.rbac.authorization.k8s.io\/splice-orc-pod-manager unchanged/);
    const role = await kubectl(['-n', 'splice-orc', 'get', 'role', POD_MANAGER, '-o', 'json']);
    expect(JSON.parse(role).rules.length).toBeGreaterThan(0);
  });

  it("k8s/'s NetworkPolicies select module pods, installing module pods and the pod-manager", async () => {
    await kubectl(['apply', '-k', k8sDir]);
    const namespace = 'splice-orc';
    const prebuilt = { package: 'lodash@4', image: 'registry.test/prebuilt:1' };
    await using pm = await startClusterPodManager(
      writeClusterConfig({ namespace, modules: { lodash: modules.lodash, prebuilt } }),
    );
    for (const module of ['lodash', 'prebuilt']) {
      const load = await http(`${pm.url}/modules/${module}/load`, { method: 'POST', body: {} });
      expect(load.status, JSON.stringify(load.body)).toBe(200);
    }
    // Each Deployment's pods, told apart by name (ReplicaSet pods are named after it), not by label.
    const pods = async () => (await api.core.listNamespacedPod({ namespace })).items;
    const podsOf = async (deployment: string) =>
      (await pods())
        .map((p) => p.metadata?.name ?? '')
        .filter((n) => n.startsWith(`${deployment}-`))
        .sort();
    const deploymentOf = async (module: string) =>
      (await moduleDeployments(namespace)).find(
        (d) => d.metadata?.annotations?.['splice-orc.dev/module-name'] === module,
      )?.metadata?.name ?? '';
    await eventually(async () => (await podsOf(POD_MANAGER)).length > 0, 20_000, 'pod-manager pod');
    const installing = await podsOf(await deploymentOf('lodash'));
    const ready = await podsOf(await deploymentOf('prebuilt'));
    const podManager = await podsOf(POD_MANAGER);
    expect(installing).toHaveLength(1);
    expect(ready).toHaveLength(1);
    // What the API server selects with the policies it returns.
    const selected = async (
      matchLabels: Record<string, string> | undefined,
      matchExpressions: Array<{ key: string; operator: string }> = [],
    ) =>
      (
        await api.core.listNamespacedPod({
          namespace,
          labelSelector: [
            ...Object.entries(matchLabels ?? {}).map(([k, v]) => `${k}=${v}`),
            // The policies use only Exists (`key` in a label selector).
            ...matchExpressions.map((e) => {
              if (e.operator !== 'Exists') throw new Error(`unexpected operator ${e.operator}`);
              return e.key;
            }),
          ].join(','),
        })
      ).items
        .map((p) => p.metadata?.name ?? '')
        .sort();
    const policies = JSON.parse(await kubectl(['-n', namespace, 'get', 'networkpolicy', '-o', 'json']))
      .items as Array<V1NetworkPolicy & { spec: { ingress?: Array<{ from?: unknown[] }> } }>;
    const policy = (name: string) => {
      const found = policies.find((p) => p.metadata?.name === name);
      if (!found?.spec) throw new Error(`no NetworkPolicy ${name}`);
      return found.spec;
    };
    const dns = [
      { protocol: 'UDP', port: 53 },
      { protocol: 'TCP', port: 53 },
    ];

    // Module pods: calls (and callback exchanges, on a Node server's second port) from the
    // pod-manager only; out, DNS only.
    const modulePorts = [
      { protocol: 'TCP', port: 50051 },
      { protocol: 'TCP', port: 50052 },
    ];
    const servers = policy('splice-orc-module-servers');
    expect(await selected(servers.podSelector?.matchLabels)).toEqual([...installing, ...ready].sort());
    expect(servers.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(servers.ingress).toEqual([
      {
        from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': POD_MANAGER } } }],
        ports: modulePorts,
      },
    ]);
    expect(await selected({ 'app.kubernetes.io/name': POD_MANAGER })).toEqual(podManager);
    expect(servers.egress).toEqual([{ ports: dns }]);

    // Pods that install their module (no prebuilt image) may also reach registries on 443.
    const installs = policy('splice-orc-module-installs');
    expect(await selected(installs.podSelector?.matchLabels, installs.podSelector?.matchExpressions)).toEqual(
      installing,
    );
    expect(installs.policyTypes).toEqual(['Egress']);
    expect(installs.egress).toEqual([{ ports: [{ protocol: 'TCP', port: 443 }] }]);

    // The pod-manager: HTTP in; DNS, the API server and module pods' gRPC and callback ports out.
    const own = policy('splice-orc-pod-manager');
    expect(await selected(own.podSelector?.matchLabels)).toEqual(podManager);
    expect(own.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(own.ingress).toEqual([{ ports: [{ protocol: 'TCP', port: 8000 }] }]);
    const [toDns, toApi, toModules] = own.egress ?? [];
    expect(toDns).toEqual({ ports: dns });
    expect(toApi).toEqual({
      ports: [
        { protocol: 'TCP', port: 443 },
        { protocol: 'TCP', port: 6443 },
      ],
    });
    expect(toModules?.ports).toEqual(modulePorts);
    expect(await selected(toModules?.to?.[0]?.podSelector?.matchLabels)).toEqual(
      [...installing, ...ready].sort(),
    );

    for (const module of ['lodash', 'prebuilt'])
      await http(`${pm.url}/modules/${module}`, { method: 'DELETE' });
  });

  it('`splice-orc init` applies the objects idempotently, keeps the token and waits for readiness', async () => {
    const namespace = `init-${Date.now().toString(36)}`;
    const lines: string[] = [];
    const first = await initCluster({
      namespace,
      image: 'splice-orc:test',
      modules: repoModules,
      kubeconfig,
      timeoutMs: 60_000,
      log: (line) => lines.push(line),
    });
    expect(first).toEqual({ url: `http://${POD_MANAGER}.${namespace}.svc:8000`, createdSecret: true });
    expect(lines).toContain('applied Deployment splice-orc-pod-manager');
    const secret = await api.core.readNamespacedSecret({ name: AUTH_SECRET, namespace });
    // Again, through the CLI: nothing is duplicated, the token stays.
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [cli, 'init', namespace, '--kubeconfig', kubeconfig, '--image', 'splice-orc:test', '--timeout', '60'],
      { cwd: repoRoot, timeout: 90_000 },
    );
    expect(stdout).toContain(`splice-orc pod-manager ready at http://${POD_MANAGER}.${namespace}.svc:8000`);
    expect(stderr).toContain(`kept Secret ${AUTH_SECRET}`);
    const after = await api.core.readNamespacedSecret({ name: AUTH_SECRET, namespace });
    expect(after.data?.token).toBe(secret.data?.token);
    const deployments = await api.apps.listNamespacedDeployment({ namespace });
    expect(deployments.items.map((d) => d.metadata?.name)).toEqual([POD_MANAGER]);
    expect(deployments.items[0]?.status?.availableReplicas).toBe(1);
  });

  it("a pod-manager with only its Role's permissions does all its work; other verbs are refused", async () => {
    const namespace = `rbac-${Date.now().toString(36)}`;
    await initCluster({
      namespace,
      image: 'splice-orc:test',
      modules: {},
      kubeconfig,
      timeoutMs: 60_000,
      log: () => undefined,
    });
    const saConfig = await serviceAccountKubeconfig(namespace);
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace, kubeconfig: saConfig }));
    // Create, wait, scale up and down (pod patch), roll on a config change, usage, delete.
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    const backend = pm.app.registry;
    await backend.addReplica(pm.app.registry.spec('lodash'));
    const victim = backend.ready('lodash')[1]?.id ?? '';
    await backend.removeReplica('lodash', victim);
    await eventually(() => !backend.ready('lodash').some((r) => r.id === victim), 20_000, 'scale-down');
    const roll = await http(`${pm.url}/modules/lodash/config`, {
      method: 'PUT',
      body: { ...modules.lodash, lib_mem_size_req: '150Mi' },
    });
    expect(roll.status, JSON.stringify(roll.body)).toBe(200);
    const view = await http(`${pm.url}/modules/lodash`);
    expect(view.body.usage[0].unavailable).toMatch(/not available/);
    const removed = await http(`${pm.url}/modules/lodash`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    expect(
      (await api.apps.listNamespacedDeployment({ namespace })).items.map((d) => d.metadata?.name),
    ).toEqual([POD_MANAGER]);

    // Verbs and resources the Role does not grant are refused by the API server.
    const { core, apps } = clientsFor(saConfig);
    await expect(core.listNamespacedSecret({ namespace })).rejects.toMatchObject({ code: 403 });
    await expect(apps.listNamespacedDeployment({ namespace })).rejects.toMatchObject({ code: 403 });
    await expect(core.deleteCollectionNamespacedPod({ namespace })).rejects.toMatchObject({ code: 403 });
    // And in a namespace where it has no Role at all, the pod-manager says so.
    const elsewhere = await createNamespace('norole');
    await using outsider = await startClusterPodManager(
      writeClusterConfig({ namespace: elsewhere, kubeconfig: saConfig }),
    );
    const refused = await http(`${outsider.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(refused.status).toBe(502);
    expect(refused.body.error.code).toBe('CLUSTER_ERROR');
    expect(refused.body.error.message).toMatch(
      /forbidden \(the pod-manager's service account lacks this permission/,
    );
  });
});

function byKindAndName(
  a: { kind?: string; metadata?: { name?: string } },
  b: { kind?: string; metadata?: { name?: string } },
): number {
  return `${a.kind}/${a.metadata?.name}`.localeCompare(`${b.kind}/${b.metadata?.name}`);
}
