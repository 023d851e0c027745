/**
 * The lifecycle loop: what the pod-manager does by itself, every `server.lifecycle_interval_ms`.
 * - keep warm: modules with keep_warm or min_replicas > 0 are started, and brought back with
 *   backoff when they die or fail to start;
 * - autoscale: replicas follow calls in flight (averaged over scale_window_s) divided by
 *   target_concurrency, within min/max_replicas; a replica is removed only after load has been low
 *   for scale_down_delay_s, and only one that holds no references;
 * - scale to zero: a module with no call for idle_timeout_s and no live reference is stopped.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { ModuleSpec } from '../config.js';
import type { ModuleRegistry } from './registry.js';

/** Options of {@link startLifecycle}. */
export interface LifecycleOptions {
  intervalMs: number;
  scaleWindowMs: number;
  scaleDownDelayMs: number;
  log: FastifyBaseLogger;
  /** Called with each decision the loop carries out, for tracking. */
  onEvent?: (event: LifecycleEvent) => void;
}

/** Something the loop did. */
export interface LifecycleEvent {
  module: string;
  action: 'keep-warm-start' | 'scale-up' | 'scale-down' | 'idle-stop';
  reason: string;
}

interface ModuleLoop {
  samples: Array<{ at: number; inFlight: number }>;
  lowSince: number | undefined;
  retryAt: number;
  failures: number;
  busy: boolean;
}

/** Starts the loop; the returned function stops it. */
export function startLifecycle(registry: ModuleRegistry, options: LifecycleOptions): () => void {
  const loops = new Map<string, ModuleLoop>();
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    for (const name of registry.names()) {
      let loop = loops.get(name);
      if (!loop) {
        loop = { samples: [], lowSince: undefined, retryAt: 0, failures: 0, busy: false };
        loops.set(name, loop);
      }
      if (loop.busy) continue;
      loop.busy = true;
      step(registry.spec(name), loop)
        .catch((error: unknown) => options.log.warn({ module: name, err: error }, 'lifecycle step failed'))
        .finally(() => {
          loop.busy = false;
        });
    }
  };

  const emit = (event: LifecycleEvent) => {
    options.log.info(event, 'lifecycle');
    options.onEvent?.(event);
  };

  async function step(spec: ModuleSpec, loop: ModuleLoop): Promise<void> {
    const status = registry.status(spec.name);
    const ready = registry.ready(spec.name);
    const starting = status.replicas.filter((r) => r.state === 'installing' || r.state === 'starting').length;
    const now = Date.now();

    if (registry.isUnloaded(spec.name)) return;
    if (spec.keepWarm && ready.length === 0 && starting === 0 && now >= loop.retryAt) {
      emit({
        module: spec.name,
        action: 'keep-warm-start',
        reason: `keep_warm/min_replicas and no server (${status.state})`,
      });
      const started = await registry.keepWarm(spec).then(
        () => true,
        () => false,
      );
      backoff(loop, !started);
      return;
    }
    if (ready.length === 0) return;
    // A replica whose restart failed is not retried while others serve: drop it.
    for (const failed of status.replicas.filter((r) => r.state === 'failed')) {
      await registry.removeReplica(spec.name, failed.id);
    }

    let inFlight = 0;
    for (const n of registry.inFlight(spec.name).values()) inFlight += n;
    loop.samples.push({ at: now, inFlight });
    while (loop.samples.length > 1 && loop.samples[0]!.at < now - options.scaleWindowMs) loop.samples.shift();
    const average = loop.samples.reduce((s, x) => s + x.inFlight, 0) / loop.samples.length;
    const current = ready.length + starting;
    const desired = Math.min(
      spec.maxReplicas,
      Math.max(spec.minReplicas, 1, Math.ceil(average / spec.targetConcurrency)),
    );
    // Replicas a batch job holds are the job's to add and remove: the loop never scales below them.
    const floor = Math.max(desired, registry.heldReplicas(spec.name));

    if (desired > current) {
      loop.lowSince = undefined;
      if (now < loop.retryAt) return;
      emit({
        module: spec.name,
        action: 'scale-up',
        reason: `${average.toFixed(1)} calls in flight on average, target ${spec.targetConcurrency} per replica: ${current} -> ${desired}`,
      });
      // At most doubling per step (as Kubernetes' autoscaler does): a config asking for many
      // replicas at once starts them in waves, each after the previous one is up.
      const step = Math.min(desired - current, Math.max(1, current));
      const added = await Promise.allSettled(Array.from({ length: step }, () => registry.addReplica(spec)));
      backoff(
        loop,
        added.some((a) => a.status === 'rejected'),
      );
      return;
    }
    if (floor < current && starting === 0) {
      loop.lowSince ??= now;
      if (now - loop.lowSince >= options.scaleDownDelayMs) {
        const checkedAt = Date.now();
        const victim = await idleReplica(spec.name);
        // Calls may have reached the victim while its stats were asked for: check again, and act
        // in the same turn of the event loop, before any other call can be routed to it.
        if (
          victim &&
          !registry.inFlight(spec.name).get(victim) &&
          registry.lastCallAt(spec.name, victim) < checkedAt
        ) {
          loop.lowSince = undefined;
          emit({
            module: spec.name,
            action: 'scale-down',
            reason: `low load for ${options.scaleDownDelayMs} ms: ${current} -> ${current - 1}`,
          });
          await registry.removeReplica(spec.name, victim);
        }
      }
      return;
    }
    loop.lowSince = undefined;

    if (
      spec.idleTimeoutMs > 0 &&
      registry.heldReplicas(spec.name) === 0 &&
      !spec.keepWarm &&
      inFlight === 0 &&
      registry.idleFor(spec.name) >= spec.idleTimeoutMs
    ) {
      const stats = await registry.replicaStats(spec.name);
      const objects = stats.reduce((s, x) => s + x.objects, 0);
      const stillIdle =
        registry.idleFor(spec.name) >= spec.idleTimeoutMs && registry.view(spec.name).in_flight === 0;
      if (stats.length === ready.length && objects === 0 && stillIdle) {
        emit({
          module: spec.name,
          action: 'idle-stop',
          reason: `no call for ${spec.idleTimeoutMs} ms and no live reference`,
        });
        await registry.stopIdle(spec.name);
      }
    }
  }

  /** After a failed start: wait 1 s, doubling up to 60 s, before the next attempt. */
  function backoff(loop: ModuleLoop, failed: boolean): void {
    loop.failures = failed ? loop.failures + 1 : 0;
    loop.retryAt = failed ? Date.now() + Math.min(60_000, 1_000 * 2 ** (loop.failures - 1)) : 0;
  }

  /** A ready replica with nothing in flight and no live reference, newest first. */
  async function idleReplica(name: string): Promise<string | undefined> {
    const inFlight = registry.inFlight(name);
    const stats = await registry.replicaStats(name);
    const candidates = stats
      .filter((s) => s.objects === 0 && !inFlight.get(s.server_id))
      .map((s) => s.server_id);
    return candidates.at(-1);
  }

  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  setImmediate(tick);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
