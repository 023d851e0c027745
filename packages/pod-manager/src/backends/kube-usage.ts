/**
 * CPU and memory of module pods from the metrics API (metrics.k8s.io, served by metrics-server).
 * A cluster without it answers "not available" per replica, never an error.
 */
import { bytesFromQuantity } from '@splice-orc/protocol';
import type { ReplicaUsage } from './backend.js';
import type { KubeApi } from './kube-api.js';
import { KubeApiError } from './kube-errors.js';

/** A PodMetrics item of metrics.k8s.io/v1beta1. */
interface PodMetrics {
  metadata: { name: string };
  containers: Array<{ usage: { cpu: string; memory: string } }>;
}

/** Usage of each named pod, summed over its containers. */
export async function usageFromPodMetrics(
  api: KubeApi,
  namespace: string,
  pods: string[],
): Promise<ReplicaUsage[]> {
  if (pods.length === 0) return [];
  let items: PodMetrics[];
  try {
    const list = (await api.custom.listNamespacedCustomObject({
      group: 'metrics.k8s.io',
      version: 'v1beta1',
      namespace,
      plural: 'pods',
    })) as { items?: PodMetrics[] };
    items = list.items ?? [];
  } catch (error) {
    const why = `metrics API (metrics.k8s.io) not available: ${KubeApiError.from(error).message}`;
    return pods.map((id) => ({ id, unavailable: why }));
  }
  return pods.map((id): ReplicaUsage => {
    const item = items.find((m) => m.metadata.name === id);
    if (!item)
      return { id, unavailable: 'no sample for this pod yet (metrics-server samples every 15 s or so)' };
    let cores = 0;
    let memory = 0;
    for (const c of item.containers) {
      cores += coresFromQuantity(c.usage.cpu);
      memory += bytesFromQuantity(c.usage.memory);
    }
    return { id, cpu_percent: Math.round(cores * 1000) / 10, memory_bytes: memory };
  });
}

/** A CPU quantity (`250m`, `12345n`, `1`) in cores. */
export function coresFromQuantity(quantity: string): number {
  const match = /^([0-9.]+)(n|u|m)?$/.exec(quantity);
  if (!match) return 0;
  const scale = { n: 1e-9, u: 1e-6, m: 1e-3 }[match[2] as 'n' | 'u' | 'm'] ?? 1;
  return Number(match[1]) * scale;
}
