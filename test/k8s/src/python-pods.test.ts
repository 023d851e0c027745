/**
 * A Python module in a cluster: the pod-manager writes a Deployment whose pods run the Python
 * module-server image and pip-install the module in their init container; the stand-in kubelet
 * runs the real Python module-server at the pod's IP, and calls from Node reach it over gRPC. A
 * change of the module's requirements rolls the Deployment to a pod of the new config.
 */
import { inspect } from 'node:util';
import { connect, kw } from '@splice-orc/client';
import { describe, expect, it } from 'vitest';
import {
  createNamespace,
  eventually,
  http,
  moduleDeployments,
  startClusterPodManager,
  writeClusterConfig,
} from './harness.js';
import { MANUAL, PYTHON_IMAGE, TestKubelet } from './kubelet.js';

const pyfixture = { runtime: 'python', package: 'splice-pyfixture==1.0.0' };

describe('Python module pods', () => {
  it('runs the Python module-server image with a pip init container, serves calls, and rolls on a requirement change', async () => {
    const namespace = await createNamespace('python');
    await using kubelet = new TestKubelet(namespace);
    await using pm = await startClusterPodManager(
      writeClusterConfig({
        namespace,
        modules: { pyfixture },
        kubernetes: { pod_labels: MANUAL, python_module_image: PYTHON_IMAGE },
        server: { start_timeout_ms: 20_000, python_index_url: 'https://pypi.mirror.test/simple/' },
      }),
    );
    const loaded = await http(`${pm.url}/modules/pyfixture/load`, { method: 'POST', body: {} });
    expect(loaded.status, JSON.stringify(loaded.body)).toBe(200);

    const [deployment] = await moduleDeployments(namespace);
    const pod = deployment?.spec?.template.spec;
    const env = (c: { env?: Array<{ name: string; value?: string }> } | undefined) =>
      Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
    expect(pod?.containers[0]?.image).toBe(PYTHON_IMAGE);
    expect(env(pod?.containers[0])).toMatchObject({ MODULE_NAME: 'pyfixture', PYTHONDONTWRITEBYTECODE: '1' });
    expect(env(pod?.containers[0]).NODE_OPTIONS).toBeUndefined();
    const installer = pod?.initContainers?.[0];
    expect(installer?.image).toBe(PYTHON_IMAGE);
    expect(installer?.command).toEqual(['python', '-m', 'splice_module_server.install']);
    expect(env(installer)).toMatchObject({
      MODULE_PACKAGE: 'splice-pyfixture==1.0.0',
      MODULE_DEPENDENCIES: '[]',
      PIP_INDEX_URL: 'https://pypi.mirror.test/simple/',
    });
    expect(deployment?.spec?.template.metadata?.labels?.['splice-orc.dev/install']).toBe('pypi');

    const client = connect(pm.url, { timeoutMs: 10_000 });
    try {
      const fx: any = client.module('pyfixture');
      expect(await fx.add(2, 3)).toBe(5);
      expect(await fx.greet('Ada', kw({ greeting: 'hi' }))).toBe('hi, Ada!');
      const [first] = loaded.body.replicas;
      const counter = await new fx.Counter(1);
      // The reference names the pod whose Python server holds the object.
      expect(inspect(counter)).toContain(`@${first.pod}]`);
      expect(await counter.increment(2).get()).toBe(3);

      const put = await http(`${pm.url}/modules/pyfixture/config`, {
        method: 'PUT',
        body: { ...pyfixture, dependency: ['python-dateutil'] },
      });
      expect(put.status, JSON.stringify(put.body)).toBe(200);
      const rolled = await eventually(
        async () => {
          const [d] = await moduleDeployments(namespace);
          const deps = d?.spec?.template.spec?.initContainers?.[0]?.env?.find(
            (e) => e.name === 'MODULE_DEPENDENCIES',
          )?.value;
          return deps === '["python-dateutil"]' ? d : undefined;
        },
        10_000,
        'the Deployment to take the new requirements',
      );
      expect(rolled?.metadata?.annotations?.['splice-orc.dev/config-hash']).not.toBe(
        deployment?.metadata?.annotations?.['splice-orc.dev/config-hash'],
      );
      // Calls reach a server of the new config once its pod is ready.
      await eventually(
        async () => {
          const replicas = (await http(`${pm.url}/modules/pyfixture`)).body.replicas as Array<{
            pod: string;
          }>;
          return replicas.length > 0 && replicas.every((r) => r.pod !== first.pod);
        },
        20_000,
        'the old pod to be replaced',
      );
      expect(await fx.add(40, 2)).toBe(42);
      await eventually(() => !kubelet.running.includes(first.pod), 20_000, "the old pod's server to stop");
    } finally {
      await client.close();
    }
  });
});
