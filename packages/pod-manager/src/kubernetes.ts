/** The Kubernetes deployment API (`@splice-orc/pod-manager/kubernetes`): kept apart so the main entry does not load the Kubernetes client. */
export { type InitOptions, type InitResult, initCluster } from './deploy/kube-init.js';
export {
  AUTH_SECRET,
  type ManifestOptions,
  POD_MANAGER,
  POD_MANAGER_RULES,
  podManagerManifests,
} from './deploy/kube-manifests.js';
export { DEFAULT_IMAGE, DEFAULT_PYTHON_IMAGE } from './deploy/images.js';
