/**
 * The Kubernetes API as the backend uses it: clients that carry a deadline on every request (their
 * failures are read in kube-errors.ts). The rest of the pod-manager never imports
 * @kubernetes/client-node.
 */
import {
  AppsV1Api,
  type Configuration,
  CoreV1Api,
  CustomObjectsApi,
  createConfiguration,
  KubeConfig,
  KubernetesObjectApi,
  ServerConfiguration,
} from '@kubernetes/client-node';
import { ServiceError } from '../errors.js';

/** The API clients of one pod-manager. */
export interface KubeApi {
  readonly config: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly objects: KubernetesObjectApi;
  /** Custom and aggregated APIs (metrics.k8s.io). */
  readonly custom: CustomObjectsApi;
  /** Longest one request may take, ms. */
  readonly timeoutMs: number;
}

/**
 * Loads the kubeconfig (the file `path` names, else $KUBECONFIG, ~/.kube/config, or the pod's
 * service account in a cluster) and creates clients whose every request is aborted after `timeoutMs`.
 */
export function createKubeApi(options: { kubeconfig?: string | undefined; timeoutMs: number }): KubeApi {
  const config = new KubeConfig();
  if (options.kubeconfig) config.loadFromFile(options.kubeconfig);
  else config.loadFromDefault();
  const cluster = config.getCurrentCluster();
  if (!cluster) {
    throw new ServiceError(
      'CLUSTER_ERROR',
      'no Kubernetes cluster configured (kubeconfig has no current cluster)',
    );
  }
  const configuration: Configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: config },
    promiseMiddleware: [
      {
        pre: async (context) => {
          context.setSignal(AbortSignal.timeout(options.timeoutMs));
          return context;
        },
        post: async (response) => response,
      },
    ],
  });
  return {
    config,
    core: new CoreV1Api(configuration),
    apps: new AppsV1Api(configuration),
    objects: new KubernetesObjectApi(configuration),
    custom: new CustomObjectsApi(configuration),
    timeoutMs: options.timeoutMs,
  };
}
