/**
 * The pods the tests run, from the code that writes them for a cluster: the pod-manager's
 * Deployment of k8s/ (`podManagerManifests`) and a module's Deployment as the Kubernetes backend
 * creates it (`deploymentFor`), with the images the config names by default.
 */
import { parseConfig } from '@splice-orc/pod-manager';
import {
  deploymentFor,
  type KubeObjectOptions,
  podManagerManifests,
} from '@splice-orc/pod-manager/kubernetes';
import type { Container, PodSpec } from './pod-spec.js';

const defaults = parseConfig({ module_config: {} }).raw.kubernetes;
/** The image of the pod-manager and of Node module pods (the config's default). */
export const IMAGE = defaults.module_image;
/** The image of Python module pods (the config's default). */
export const PYTHON_IMAGE = defaults.python_module_image;

/** The module-server secret of the module pods the tests make. */
export const MODULE_SECRET = 'a-module-server-secret-for-tests';

/** A pod spec and its containers by name. */
export interface Pod {
  spec: PodSpec;
  container(name: string): Container;
}

function podOf(spec: PodSpec | undefined): Pod {
  if (!spec) throw new Error('the Deployment has no pod spec');
  return {
    spec,
    container: (name) => {
      const found = [...(spec.initContainers ?? []), ...spec.containers].find((c) => c.name === name);
      if (!found) throw new Error(`the pod has no container ${name}`);
      return found;
    },
  };
}

/** The pod of the pod-manager's Deployment in k8s/. */
export function podManagerPod(): Pod {
  const deployment = podManagerManifests({ namespace: 'splice-orc', image: IMAGE, modules: {} }).find(
    (m): m is ReturnType<typeof deploymentFor> => m.kind === 'Deployment',
  );
  return podOf(deployment?.spec?.template.spec);
}

/**
 * The pod of a module's Deployment: `module` is its module_config entry (package, runtime...);
 * `pythonIndexUrl` is server.python_index_url.
 */
export function modulePod(name: string, module: Record<string, unknown>, pythonIndexUrl?: string): Pod {
  const spec = parseConfig({ module_config: { [name]: module } }).modules.get(name);
  if (!spec) throw new Error(`no module ${name} in the config`);
  const options: KubeObjectOptions = {
    namespace: 'splice-orc',
    moduleImage: IMAGE,
    pythonModuleImage: PYTHON_IMAGE,
    pythonIndexUrl,
    imagePullPolicy: 'Never',
    leaseMs: 60_000,
    graceMs: 5_000,
    maxPayloadBytes: 16 * 1024 * 1024,
    startTimeoutMs: 120_000,
    liveness: { intervalMs: 10_000, failures: 3 },
  };
  return podOf(deploymentFor(spec, 1, options, MODULE_SECRET).spec?.template.spec);
}
