/**
 * What a module pod means to the pod-manager: whether it takes calls, at which endpoint, and, for a
 * pod that cannot start, the cluster's reason in words an operator can act on. Pure functions of
 * the pod object the informer holds.
 */
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import type { ReplicaStatus } from './backend.js';
import { GRPC_PORT, SECRET_ENV } from './kube-objects.js';

/**
 * Waiting reasons after which a container will not start by itself soon: the call waiting for it is
 * failed at once with the reason rather than left to time out.
 */
const STUCK_REASONS = new Set([
  'CrashLoopBackOff',
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

/** One pod as a replica of the module. */
export function replicaFromPod(pod: V1Pod): ReplicaStatus {
  const name = pod.metadata?.name ?? '?';
  const base = { id: name, pod: name };
  if (pod.metadata?.deletionTimestamp) return { ...base, state: 'draining' };
  const reason = failureOf(pod);
  if (reason) return { ...base, state: 'failed', reason };
  if (isReady(pod)) {
    const ready = pod.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime;
    return {
      ...base,
      state: 'ready',
      endpoint: endpointOf(pod),
      started_at: ready ? new Date(ready).toISOString() : undefined,
    };
  }
  const initDone = (pod.status?.initContainerStatuses ?? []).every(
    (c) => c.state?.terminated?.exitCode === 0,
  );
  return { ...base, state: initDone ? 'starting' : 'installing' };
}

/** How often the cluster restarted the pod's containers. */
export function restartsOf(pod: V1Pod): number {
  return (pod.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0);
}

/** Ready, not terminating and with an IP: it may take calls. */
export function isReady(pod: V1Pod): boolean {
  return (
    !pod.metadata?.deletionTimestamp &&
    !!pod.status?.podIP &&
    pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

/** `ip:port` of the pod's module-server. */
export function endpointOf(pod: V1Pod, port = GRPC_PORT): string | undefined {
  const ip = pod.status?.podIP;
  if (!ip) return undefined;
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `ip:port` of the pod's callback endpoint, when its server has one of its own (a `callbacks` port). */
export function callbackEndpointOf(pod: V1Pod): string | undefined {
  const port = pod.spec?.containers
    ?.flatMap((c) => c.ports ?? [])
    .find((p) => p.name === 'callbacks')?.containerPort;
  return port === undefined ? undefined : endpointOf(pod, port);
}

/**
 * The secret a pod's module-server wants, from the pod's own spec: each pod says what it was
 * started with, so pods adopted after a pod-manager restart, or of an older template, are reached
 * with their own secret.
 */
export function secretOf(pod: V1Pod): string | undefined {
  const server = pod.spec?.containers.find((c) => c.name === 'module-server');
  return server?.env?.find((e) => e.name === SECRET_ENV)?.value || undefined;
}

/** Why the pod cannot start, or undefined while it may still start. */
export function failureOf(pod: V1Pod): string | undefined {
  const status = pod.status;
  if (!status) return undefined;
  if (status.phase === 'Failed') {
    return `pod failed: ${[status.reason, status.message].filter(Boolean).join(': ') || 'no reason given'}`;
  }
  const scheduled = status.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    return `Unschedulable: ${scheduled.message ?? 'no node fits the pod'}`;
  }
  for (const c of status.initContainerStatuses ?? []) {
    const why = containerFailure(c, true);
    if (why) return `install (init container): ${why}`;
  }
  for (const c of status.containerStatuses ?? []) {
    const why = containerFailure(c, false);
    if (why) return `module-server container: ${why}`;
  }
  return undefined;
}

function containerFailure(c: V1ContainerStatus, init: boolean): string | undefined {
  const waiting = c.state?.waiting;
  const last = c.lastState?.terminated;
  const lastWords = last
    ? ` (last exit ${last.exitCode}${last.reason ? ` ${last.reason}` : ''}${last.message ? `: ${last.message.trim()}` : ''})`
    : '';
  if (waiting?.reason && STUCK_REASONS.has(waiting.reason)) {
    return `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}${lastWords}`;
  }
  // An init container that exited non-zero is retried with backoff, but its install failed.
  const terminated = c.state?.terminated;
  if (init && terminated && terminated.exitCode !== 0) {
    return `exited with ${terminated.exitCode}${terminated.message ? `: ${terminated.message.trim()}` : ''}`;
  }
  return undefined;
}

/**
 * How the pod's module-server container ended at or after `since` (epoch ms), in words: its
 * termination reason and exit code, from its current state (not restarted yet) or its last one
 * (restarted). Undefined when it has not ended since then.
 */
export function terminationOf(pod: V1Pod, since: number): string | undefined {
  const c = pod.status?.containerStatuses?.find((s) => s.name === 'module-server');
  for (const ended of [c?.state?.terminated, c?.lastState?.terminated]) {
    if (!ended?.finishedAt || new Date(ended.finishedAt).getTime() < since) continue;
    const why =
      ended.reason === 'OOMKilled'
        ? 'OOMKilled: it used more memory than its limit (lib_mem_limit)'
        : ended.reason;
    return `${why ?? 'ended'} (exit ${ended.exitCode})`;
  }
  return undefined;
}
