/**
 * The Kubernetes backend against a real kube-apiserver (with controller-manager, scheduler, and kwok
 * making pods Ready): the objects it creates, readiness, failures with the cluster's reason,
 * single-flight and adopting creation, config rolls, delete, and usage without a metrics API.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  createNamespace,
  http,
  moduleDeployments,
  modules,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';

const api = adminApi();
let namespace: string;
beforeAll(async () => {
  namespace = await createNamespace('backend');
});

describe('Kubernetes backend', () => {
  it('creates a hardened Deployment and a headless Service per module and waits for a ready pod', async () => {
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace }));
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    expect(load.body.state).toBe('ready');
    const [replica] = load.body.replicas;
    expect(replica.pod).toMatch(/^splice-lodash-[0-9a-f]{8}-/);
    expect(replica.endpoint).toMatch(/^127\.77\.\d+\.\d+:50051$/);

    const [deployment] = await moduleDeployments(namespace);
    expect(deployment?.metadata?.name).toMatch(/^splice-lodash-[0-9a-f]{8}$/);
    expect(deployment?.metadata?.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'splice-orc',
      'app.kubernetes.io/component': 'module-server',
    });
    expect(deployment?.metadata?.annotations?.['splice-orc.dev/module-name']).toBe('lodash');
    expect(deployment?.metadata?.annotations?.['splice-orc.dev/config-hash']).toMatch(/^[0-9a-f]{16}$/);
    const pod = deployment?.spec?.template.spec;
    expect(pod?.automountServiceAccountToken).toBe(false);
    expect(pod?.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const server = pod?.containers.find((c) => c.name === 'module-server');
    // Memory is limited by default, so one module cannot take the node down.
    expect(server?.resources).toEqual({
      requests: { cpu: '250m', memory: '100Mi' },
      limits: { memory: '512Mi' },
    });
    expect(server?.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    // The probe's timing fields sit on the probe, beside (not inside) its grpc handler.
    expect(server?.readinessProbe).toMatchObject({
      grpc: { port: 50051 },
      periodSeconds: 2,
      timeoutSeconds: 2,
    });
    expect(server?.livenessProbe?.grpc?.port).toBe(50051);
    const env = Object.fromEntries(
      (server?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]),
    );
    expect(env).toMatchObject({
      SERVICE_TYPE: 'module_service',
      MODULE_NAME: 'lodash',
      MODULE_PACKAGE: 'lodash@4',
      SPLICE_SERVER_ID: 'metadata.name',
    });
    const install = pod?.initContainers?.[0];
    expect(install?.env?.find((e) => e.name === 'SERVICE_TYPE')?.value).toBe('module_install');
    expect(install?.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(install?.resources).toEqual({
      requests: { cpu: '250m', memory: '100Mi' },
      limits: { memory: '1Gi' },
    });
    expect(pod?.volumes).toEqual([
      { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
      { name: 'modules', emptyDir: { sizeLimit: '1Gi' } },
      { name: 'install-tmp', emptyDir: { sizeLimit: '1Gi' } },
    ]);
    expect(server?.volumeMounts?.find((m) => m.mountPath === '/modules')?.readOnly).toBe(true);

    const service = await api.core.readNamespacedService({
      name: deployment?.metadata?.name ?? '',
      namespace,
    });
    expect(service.spec?.clusterIP).toBe('None');
    expect(service.spec?.selector).toEqual(deployment?.spec?.selector.matchLabels);
  });

  it("gives a module's Deployment the memory limits and volume sizes of its module_config", async () => {
    const sized = {
      sized: {
        package: 'lodash@4',
        lib_mem_limit: '768Mi',
        install_mem_limit: '2Gi',
        install_size_limit: '3Gi',
      },
    };
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace, modules: sized }));
    const load = await http(`${pm.url}/modules/sized/load`, { method: 'POST', body: {} });
    expect(load.status, JSON.stringify(load.body)).toBe(200);
    const deployment = (await moduleDeployments(namespace)).find(
      (d) => d.metadata?.annotations?.['splice-orc.dev/module-name'] === 'sized',
    );
    const template = deployment?.spec?.template.spec;
    expect(template?.containers[0]?.resources).toEqual({ limits: { memory: '768Mi' } });
    // The installer asks for what the server gets, so installing reserves no more than serving.
    expect(template?.initContainers?.[0]?.resources).toEqual({
      requests: { memory: '768Mi' },
      limits: { memory: '2Gi' },
    });
    expect(template?.volumes?.map((v) => v.emptyDir?.sizeLimit)).toEqual(['256Mi', '3Gi', '3Gi']);
    // Without lib_mem_size_req, the API server gives the pod's server its limit as its request.
    const [pod] = (
      await api.core.listNamespacedPod({
        namespace,
        labelSelector: `splice-orc.dev/module=${deployment?.metadata?.name}`,
      })
    ).items;
    expect(pod?.spec?.containers[0]?.resources).toEqual({
      requests: { memory: '768Mi' },
      limits: { memory: '768Mi' },
    });
  });

  it('starts a module with a prebuilt image without an init container', async () => {
    const ns = await createNamespace('image');
    const withImage = { lodash: { ...modules.lodash, image: 'registry.example/lodash-module:1' } };
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace: ns, modules: withImage }));
    const load = await http(`${pm.url}/modules/lodash/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(200);
    const pod = (await moduleDeployments(ns))[0]?.spec?.template.spec;
    expect(pod?.initContainers).toBeUndefined();
    expect(pod?.containers[0]?.image).toBe('registry.example/lodash-module:1');
    expect(pod?.containers[0]?.env?.some((e) => e.name === 'MODULE_RESOLVE_FROM')).toBe(false);
  });

  it('fails a waiting call fast with the cluster reason when no node fits the pod', async () => {
    const huge = { huge: { package: 'lodash@4', lib_cpu_req: '64' } };
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace, modules: huge }));
    const started = Date.now();
    const load = await http(`${pm.url}/modules/huge/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(502);
    expect(load.body.error.code).toBe('POD_START_FAILED');
    expect(load.body.error.message).toMatch(/Unschedulable: .*Insufficient cpu/);
    // Long before start_timeout_ms (30 s): the scheduler's verdict ends the wait.
    expect(Date.now() - started).toBeLessThan(15_000);
    const view = await http(`${pm.url}/modules/huge`);
    expect(view.body.state).toBe('failed');
    expect(view.body.reason).toMatch(/Insufficient cpu/);
  });

  it('refuses a local folder package without an image, naming the fix', async () => {
    const local = { local: { package: 'file:./somewhere' } };
    await using pm = await startClusterPodManager(writeClusterConfig({ namespace, modules: local }));
    const load = await http(`${pm.url}/modules/local/load`, { method: 'POST', body: {} });
    expect(load.status).toBe(502);
    expect(load.body.error.code).toBe('INSTALL_FAILED');
    expect(load.body.error.message).toMatch(/set "image"/);
  });
});
