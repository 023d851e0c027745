/**
 * The Kubernetes objects of one module, built from its spec: a Deployment (the cluster restarts a
 * crashed server and rolls a changed one) and a headless Service (a DNS name for its pods; the
 * pod-manager itself routes to pod IPs, because a call on a remote reference must reach the very
 * pod that holds the object). Pure: the same spec always gives the same objects and hash.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1Container, V1Deployment, V1PodTemplateSpec, V1Service } from '@kubernetes/client-node';
import { environmentFor, NO_CODE_GENERATION_FLAG } from '@splice-orc/module-server/environment';
import { bytesFromQuantity } from '@splice-orc/protocol';
import type { ModuleSpec } from '../config.js';

/** Port module-servers listen on in their pods. */
export const GRPC_PORT = 50051;
/** Port of a Node module-server's callback endpoint (INVOKE.md 3.7); a Python server serves it on GRPC_PORT. */
export const CALLBACK_PORT = 50052;
/** Seconds a deleted pod keeps serving before its server is told to stop. */
const PRE_STOP_S = 2;
/** Where the init container installs the module; the server imports it from there. */
const INSTALL_DIR = '/modules/install';

export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const COMPONENT = 'app.kubernetes.io/component';
/** Label holding the module's object name: selects its pods. */
export const MODULE_LABEL = 'splice-orc.dev/module';
/**
 * Label of pods that install their module at start (no prebuilt `image`), valued `npm` or `pypi`:
 * a NetworkPolicy lets only these reach package registries (TCP 443). Policies select pods, not
 * containers, so the server of such a pod can reach them too.
 */
export const INSTALL_LABEL = 'splice-orc.dev/install';
/** Annotation holding the module name as configured (labels cannot hold `@scope/pkg`). */
export const MODULE_NAME_ANNOTATION = 'splice-orc.dev/module-name';
/** Annotation holding the hash of the pod template: a different hash means the config changed. */
export const CONFIG_HASH_ANNOTATION = 'splice-orc.dev/config-hash';
/**
 * Environment variable of module pods holding the module-server's secret: a plain value in the pod
 * template (the admission policy allows no Secret references), readable by those who may read the
 * module's Deployment; the pod-manager reads each pod's own from its spec.
 */
export const SECRET_ENV = 'SPLICE_SERVER_SECRET';

/** The secret a Deployment's servers were given, if any. */
export function secretOfDeployment(deployment: V1Deployment | undefined): string | undefined {
  const server = deployment?.spec?.template.spec?.containers.find((c) => c.name === 'module-server');
  return server?.env?.find((e) => e.name === SECRET_ENV)?.value || undefined;
}

/** A new module-server secret. */
export function newSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** Selects every module pod the pod-manager manages. */
export const MANAGED_SELECTOR = `${MANAGED_BY}=splice-orc,${COMPONENT}=module-server`;

/** What the objects depend on beyond the module spec. */
export interface KubeObjectOptions {
  namespace: string;
  /** The splice-orc image: installs and serves any npm module. */
  moduleImage: string;
  /** The Python module-server's image: installs (pip) and serves any Python module. */
  pythonModuleImage: string;
  /** pip's index for Python modules' installs (PIP_INDEX_URL); default PyPI. */
  pythonIndexUrl?: string | undefined;
  imagePullPolicy: 'IfNotPresent' | 'Always' | 'Never';
  /** Extra labels of module pods. */
  podLabels?: Readonly<Record<string, string>>;
  /** nodeSelector of module pods (kubernetes.node_selector); none when empty. */
  nodeSelector?: Readonly<Record<string, string>>;
  leaseMs: number;
  graceMs: number;
  maxPayloadBytes: number;
  startTimeoutMs: number;
  /** Liveness probe period and failures before a restart; interval 0 = no liveness probe. */
  liveness: { intervalMs: number; failures: number };
  /** Limits of each server's reference table (objects per session and server, sessions). */
  limits?: { maxObjectsPerSession: number; maxObjects: number; maxSessions: number };
}

/**
 * The object name of a module: a DNS label that stays readable (`@acme/big.lib` ->
 * `splice-acme-big-lib-1a2b3c4d`) and unique (the hash tells `a.b` from `a-b`).
 */
export function objectNameFor(module: string): string {
  const slug = module
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  const hash = createHash('sha256').update(module).digest('hex').slice(0, 8);
  return `splice-${slug || 'module'}-${hash}`;
}

/** Labels shared by a module's Deployment, Service and pods. */
export function labelsFor(module: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'splice-orc-module',
    [MANAGED_BY]: 'splice-orc',
    [COMPONENT]: 'module-server',
    [MODULE_LABEL]: objectNameFor(module),
  };
}

/**
 * The module's Deployment with `replicas` pods; its config hash is in an annotation. `secret` is
 * the credential its servers want (made at creation, kept across rolls); the hash leaves it out, so
 * the same config hashes the same whatever the secret.
 */
export function deploymentFor(
  spec: ModuleSpec,
  replicas: number,
  o: KubeObjectOptions,
  secret: string,
): V1Deployment {
  const name = objectNameFor(spec.name);
  const labels = labelsFor(spec.name);
  const template = podTemplateFor(spec, o);
  const hash = configHash(template);
  template.spec?.containers[0]?.env?.push({ name: SECRET_ENV, value: secret });
  // On the pods too, so that a start judges only pods of the current config.
  template.metadata = {
    ...template.metadata,
    annotations: { ...template.metadata?.annotations, [CONFIG_HASH_ANNOTATION]: hash },
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name,
      namespace: o.namespace,
      labels,
      annotations: { [MODULE_NAME_ANNOTATION]: spec.name, [CONFIG_HASH_ANNOTATION]: hash },
    },
    spec: {
      replicas,
      selector: { matchLabels: { [MODULE_LABEL]: name } },
      // A new pod is ready before an old one goes: a config change never leaves the module without servers.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      revisionHistoryLimit: 3,
      progressDeadlineSeconds: Math.max(60, Math.ceil(o.startTimeoutMs / 1000)),
      template,
    },
  };
}

/** The module's headless Service: DNS for its pods, for tools and for debugging. */
export function serviceFor(spec: ModuleSpec, o: KubeObjectOptions): V1Service {
  const name = objectNameFor(spec.name);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: o.namespace,
      labels: labelsFor(spec.name),
      annotations: { [MODULE_NAME_ANNOTATION]: spec.name },
    },
    spec: {
      clusterIP: 'None',
      selector: { [MODULE_LABEL]: name },
      ports: [{ name: 'grpc', port: GRPC_PORT, targetPort: 'grpc', protocol: 'TCP', appProtocol: 'grpc' }],
    },
  };
}

/** Hash of a pod template, as kept in the config-hash annotation. */
export function configHash(template: V1PodTemplateSpec): string {
  return createHash('sha256').update(stableJson(template)).digest('hex').slice(0, 16);
}

function podTemplateFor(spec: ModuleSpec, o: KubeObjectOptions): V1PodTemplateSpec {
  const install = spec.image === undefined;
  const requests = compact({ cpu: spec.cpu, memory: spec.memory });
  const limits = compact({ cpu: spec.cpuLimit, memory: spec.memoryLimit });
  const resources = {
    ...(Object.keys(requests).length > 0 ? { requests } : {}),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
  };
  const secure = {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  };
  const tmp = { name: 'tmp', mountPath: '/tmp' };
  const python = spec.runtime === 'python';
  const serverEnv = environmentFor({
    moduleName: spec.name,
    resolveFrom: install ? INSTALL_DIR : undefined,
    host: '0.0.0.0',
    port: GRPC_PORT,
    callbackPort: python ? undefined : CALLBACK_PORT,
    leaseMs: o.leaseMs,
    graceMs: o.graceMs,
    maxMessageBytes: o.maxPayloadBytes,
    limits: o.limits,
    codeGeneration: spec.codeGeneration,
  });
  const server: V1Container = {
    name: 'module-server',
    image: spec.image ?? (python ? o.pythonModuleImage : o.moduleImage),
    imagePullPolicy: o.imagePullPolicy,
    env: [
      // The Python image runs its server whatever SERVICE_TYPE says; the Node image reads it.
      ...(python ? [] : [{ name: 'SERVICE_TYPE', value: 'module_service' }]),
      { name: 'MODULE_PACKAGE', value: spec.package },
      ...Object.entries(serverEnv).map(([name, value]) => ({ name, value })),
      // Module code may not compile strings, unless the module opts in (the server checks).
      ...(spec.codeGeneration || python ? [] : [{ name: 'NODE_OPTIONS', value: NO_CODE_GENERATION_FLAG }]),
      // No .pyc files on a read-only root, and logs line by line.
      ...(python
        ? [
            { name: 'PYTHONDONTWRITEBYTECODE', value: '1' },
            { name: 'PYTHONUNBUFFERED', value: '1' },
          ]
        : []),
      // References carry the pod name: the pod-manager routes calls on them back to this pod.
      { name: 'SPLICE_SERVER_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ],
    ports: [
      { name: 'grpc', containerPort: GRPC_PORT, protocol: 'TCP' },
      ...(python ? [] : [{ name: 'callbacks', containerPort: CALLBACK_PORT, protocol: 'TCP' }]),
    ],
    // The module-server serves grpc.health.v1 once its module is imported, which may take a while:
    // the startup probe holds liveness off for up to start_timeout_ms.
    startupProbe: {
      grpc: { port: GRPC_PORT },
      periodSeconds: 2,
      timeoutSeconds: 2,
      failureThreshold: Math.max(1, Math.ceil(o.startTimeoutMs / 2_000)),
    },
    readinessProbe: {
      grpc: { port: GRPC_PORT },
      initialDelaySeconds: 1,
      periodSeconds: 2,
      timeoutSeconds: 2,
      failureThreshold: 3,
    },
    ...(o.liveness.intervalMs > 0
      ? {
          livenessProbe: {
            grpc: { port: GRPC_PORT },
            periodSeconds: Math.max(1, Math.round(o.liveness.intervalMs / 1000)),
            timeoutSeconds: 5,
            failureThreshold: o.liveness.failures,
          },
        }
      : {}),
    // Endpoints and the pod-managers' watches learn of the deletion before the server stops taking calls.
    lifecycle: { preStop: { sleep: { seconds: PRE_STOP_S } } },
    resources,
    securityContext: secure,
    // A server that dies on start shows its last words in the pod status, hence in GET /modules/:name.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: install ? [tmp, { name: 'modules', mountPath: '/modules', readOnly: true }] : [tmp],
  };
  const installer: V1Container = {
    name: 'install',
    image: python ? o.pythonModuleImage : o.moduleImage,
    imagePullPolicy: o.imagePullPolicy,
    // The Python image's installer is a module of its server package (pip install --target).
    ...(python ? { command: ['python', '-m', 'splice_module_server.install'] } : {}),
    env: [
      ...(python ? [] : [{ name: 'SERVICE_TYPE', value: 'module_install' }]),
      { name: 'MODULE_NAME', value: spec.name },
      { name: 'MODULE_PACKAGE', value: spec.package },
      { name: 'MODULE_DEPENDENCIES', value: JSON.stringify(spec.dependencies) },
      { name: 'MODULE_RESOLVE_FROM', value: INSTALL_DIR },
      { name: 'SPLICE_INSTALL_TIMEOUT_MS', value: String(o.startTimeoutMs) },
      { name: 'HOME', value: '/tmp' },
      // npm's cache is removed after the install, on a volume of its own, not the server's
      // size-limited /tmp; pip keeps none (and compiles the bytecode the read-only server cannot).
      ...(python
        ? o.pythonIndexUrl
          ? [{ name: 'PIP_INDEX_URL', value: o.pythonIndexUrl }]
          : []
        : [
            { name: 'npm_config_cache', value: '/tmp/.npm' },
            { name: 'SPLICE_INSTALL_DROP_CACHE', value: '1' },
          ]),
      ...(spec.installScripts ? [{ name: 'MODULE_INSTALL_SCRIPTS', value: '1' }] : []),
    ],
    // npm or pip may need more memory than the server: a limit of its own.
    resources: { requests: installRequests(spec), limits: { memory: spec.installMemoryLimit } },
    securityContext: secure,
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: [
      { name: 'install-tmp', mountPath: '/tmp' },
      { name: 'modules', mountPath: '/modules' },
    ],
  };
  return {
    metadata: {
      labels: {
        ...o.podLabels,
        ...labelsFor(spec.name),
        ...(install ? { [INSTALL_LABEL]: python ? 'pypi' : 'npm' } : {}),
      },
      annotations: { [MODULE_NAME_ANNOTATION]: spec.name },
    },
    spec: {
      // Module code never talks to the API server.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // Only when set: templates (and their config hashes) without one stay as they were.
      ...(o.nodeSelector && Object.keys(o.nodeSelector).length > 0
        ? { nodeSelector: { ...o.nodeSelector } }
        : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        fsGroup: 1000,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      terminationGracePeriodSeconds: PRE_STOP_S + Math.ceil(o.graceMs / 1000) + 5,
      ...(install ? { initContainers: [installer] } : {}),
      containers: [server],
      volumes: [
        { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
        ...(install
          ? [
              { name: 'modules', emptyDir: { sizeLimit: spec.installSizeLimit } },
              { name: 'install-tmp', emptyDir: { sizeLimit: spec.installSizeLimit } },
            ]
          : []),
      ],
    },
  };
}

/**
 * Requests of the install container: the server's, so that installing reserves no more than the
 * pod does anyway (the scheduler counts the larger of the init container's and the server's). A
 * server without a memory request gets its limit as one from the API server, so the installer asks
 * for that; never more than its own limit, which a request may not exceed.
 */
function installRequests(spec: ModuleSpec): Record<string, string> {
  const memory = spec.memory ?? spec.memoryLimit;
  const capped =
    bytesFromQuantity(memory) > bytesFromQuantity(spec.installMemoryLimit) ? spec.installMemoryLimit : memory;
  return compact({ cpu: spec.cpu, memory: capped });
}

function compact(record: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).filter((e): e is [string, string] => e[1] !== undefined));
}

/** JSON with sorted keys, so that equal objects hash equally. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
