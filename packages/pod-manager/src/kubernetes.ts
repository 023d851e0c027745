/** The Kubernetes deployment API (`@splice-orc/pod-manager/kubernetes`): kept apart so the main entry does not load the Kubernetes client. */

// A module's Deployment exactly as the Kubernetes backend creates it, for tools and tests that run its pods elsewhere.
export { deploymentFor, type KubeObjectOptions } from './backends/kube-objects.js';
export { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE } from './deploy/images.js';
export { CHART_VERSION, chartFiles, writeChart } from './deploy/kube-chart.js';
export { manifestsYaml } from './deploy/kube-cli.js';
export { type InitOptions, type InitResult, initCluster } from './deploy/kube-init.js';
export {
  AUTH_SECRET,
  type ManifestOptions,
  POD_MANAGER,
  POD_MANAGER_RESOURCES,
  POD_MANAGER_RULES,
  podManagerManifests,
  STATE_DIR,
} from './deploy/kube-manifests.js';
