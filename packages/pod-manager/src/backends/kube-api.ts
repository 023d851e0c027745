/**
 * The Kubernetes API as the backend uses it: clients that carry a deadline on every request, and
 * the one table that maps an API failure to a service error. The rest of the pod-manager never
 * imports @kubernetes/client-node.
 */
import {
  ApiException,
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

/** The HTTP status of a failed API request, or undefined when it never got an answer. */
export function kubeStatusOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

/** The API server's own message of a failed request (its Status object), else the error's. */
export function kubeMessageOf(error: unknown): string {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? safeJson(error.body) : error.body;
    const message = (body as { message?: unknown } | undefined)?.message;
    return typeof message === 'string' ? message : `HTTP ${error.code}`;
  }
  if (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError')) {
    return 'no answer from the API server in time';
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The service error for a failed API request made to do `what`. 403 names the missing permission
 * (the pod-manager's Role lacks it); no answer at all means the API server is unreachable.
 */
export function serviceErrorFromKube(error: unknown, what: string): ServiceError {
  if (error instanceof ServiceError) return error;
  const status = kubeStatusOf(error);
  const message = kubeMessageOf(error);
  const why =
    status === 403
      ? `forbidden (the pod-manager's service account lacks this permission; see k8s/role.yaml): ${message}`
      : status === undefined
        ? `the Kubernetes API server is unreachable: ${message}`
        : `${message} (HTTP ${status})`;
  return new ServiceError('CLUSTER_ERROR', `cannot ${what}: ${why}`, { cause: error });
}

/** Runs `request`; a 404 answer resolves undefined instead of failing. */
export async function unlessNotFound<T>(request: Promise<T>): Promise<T | undefined> {
  try {
    return await request;
  } catch (error) {
    if (kubeStatusOf(error) === 404) return undefined;
    throw error;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}
