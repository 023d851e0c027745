/**
 * The local backend, the embedded default: each module's servers are child processes on free
 * loopback ports (see local-replica.ts for one of them). A pod-manager that stops takes its
 * children with it; one that is killed closes their IPC channel, on which they exit.
 */

import pidusage from 'pidusage';
import { installChanged, type ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import {
  type Backend,
  type ModuleStatus,
  type ReadyReplica,
  type ReplicaStatus,
  type ReplicaUsage,
  rollUp,
} from './backend.js';
import { installFor, type LocalBackendOptions, Replica } from './local-replica.js';

export type { LocalBackendOptions };

/**
 * A module-server runs as the pod-manager's user, and Node's permission model does not stop it from
 * sending signals: SIGUSR1 would open this process's inspector on 127.0.0.1:9229, through which a
 * module could run code here. Where Landlock scopes signals (Linux 6.12+) the kernel already refuses
 * it (isolation.ts); elsewhere a listener of our own makes Node ignore the signal. (Debug the
 * pod-manager with `--inspect` instead.)
 */
function ignoreInspectorSignal(log: LocalBackendOptions['log']): void {
  if (process.listenerCount('SIGUSR1') > 0) return;
  process.on('SIGUSR1', () => {
    log.warn('SIGUSR1 ignored: it would open the inspector to module-servers on this machine');
  });
}

/** Creates the local-process backend. */
export function createLocalBackend(options: LocalBackendOptions): Backend {
  ignoreInspectorSignal(options.log);
  const modules = new Map<string, LocalModule>();
  const slots = () => [...modules.values()].reduce((n, m) => n + m.processes, 0);
  const moduleFor = (spec: ModuleSpec) => {
    let m = modules.get(spec.name);
    if (!m) {
      m = new LocalModule(options, slots);
      modules.set(spec.name, m);
    }
    m.spec = spec;
    return m;
  };
  return {
    start: (spec, startOptions) => moduleFor(spec).start(startOptions?.signal),
    ready: (name) => modules.get(name)?.ready() ?? [],
    prepare: async (spec) => {
      await installFor(spec, options);
    },
    reconfigure: async (spec, previous) => {
      // What runs was started from the old install (or with the old code-generation flag).
      if (installChanged(spec, previous) || spec.codeGeneration !== previous.codeGeneration)
        await modules.get(spec.name)?.stopAll();
    },
    resume: async () => undefined,
    addReplica: (spec) => moduleFor(spec).add(),
    removeReplica: async (name, id) => modules.get(name)?.remove(id),
    stop: async (name) => modules.get(name)?.stopAll(),
    status: (name) => modules.get(name)?.status() ?? { state: 'absent', replicas: [], restarts: 0 },
    usage: async (name) => usageOf(modules.get(name)?.status().replicas ?? []),
    reportUnreachable: (name, endpoint) =>
      modules.get(name)?.reportUnreachable(endpoint) ?? Promise.resolve(false),
    close: async () => {
      await Promise.all([...modules.values()].map((m) => m.stopAll()));
    },
  };
}

/** CPU (percent of one core since the last sample) and resident memory of each server process. */
async function usageOf(replicas: ReplicaStatus[]): Promise<ReplicaUsage[]> {
  return Promise.all(
    replicas.map(async (r): Promise<ReplicaUsage> => {
      if (!r.pid) return { id: r.id, unavailable: 'no process' };
      try {
        const stat = await pidusage(r.pid);
        return { id: r.id, cpu_percent: Math.round(stat.cpu * 10) / 10, memory_bytes: stat.memory };
      } catch (error) {
        return { id: r.id, unavailable: (error as Error).message };
      }
    }),
  );
}

class LocalModule {
  spec: ModuleSpec | undefined;
  #replicas: Replica[] = [];
  /** Replicas being drained: shown in status until they are gone, never routed to. */
  #draining = new Set<Replica>();
  #removed = 0;
  #next = 1;

  constructor(
    readonly options: LocalBackendOptions,
    /** Processes of every module of the backend, for max_module_servers. */
    readonly processesOfAll: () => number,
  ) {}

  /** This module's process slots: serving, starting and draining. */
  get processes(): number {
    return this.#replicas.length + this.#draining.size;
  }

  /** At least one replica ready: waits for the first of those starting, or starts one. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.ready().length > 0) return;
    if (this.#replicas.length === 0) this.#add();
    const starts = this.#replicas.map((r) => r.start({ signal }));
    try {
      await Promise.any(starts);
    } catch (error) {
      throw error instanceof AggregateError ? error.errors[0] : error;
    }
  }

  /** Adds a replica; one that fails to start is dropped, not left to be rebooted later. */
  async add(): Promise<void> {
    const replica = this.#add();
    try {
      await replica.start();
    } catch (error) {
      this.#replicas = this.#replicas.filter((r) => r !== replica);
      throw error;
    }
  }

  ready(): ReadyReplica[] {
    const out: ReadyReplica[] = [];
    for (const r of this.#replicas) {
      const serving = r.serving;
      if (serving) out.push(serving);
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    const replica = this.#replicas.find((r) => r.status().id === id);
    if (!replica) return;
    this.#replicas = this.#replicas.filter((r) => r !== replica);
    await this.#drain(replica);
  }

  async stopAll(): Promise<void> {
    const replicas = this.#replicas;
    this.#replicas = [];
    await Promise.all(replicas.map((r) => this.#drain(r)));
  }

  async #drain(replica: Replica): Promise<void> {
    this.#draining.add(replica);
    try {
      await replica.drain();
    } finally {
      this.#draining.delete(replica);
      this.#removed += replica.restarts;
    }
  }

  status(): ModuleStatus {
    const serving = this.#replicas.map((r) => r.status());
    const draining = [...this.#draining].map((r) => r.status());
    const restarts = this.#replicas.reduce((sum, r) => sum + r.restarts, this.#removed);
    // Draining replicas are shown, and make the module stopping, but do not make it ready.
    const { state, reason } = rollUp(serving, draining.length > 0 ? 'stopping' : 'absent');
    return { state, reason, replicas: [...serving, ...draining], restarts };
  }

  async reportUnreachable(endpoint: string): Promise<boolean> {
    const replica = this.#replicas.find((r) => r.status().endpoint === endpoint);
    return replica ? replica.reportUnreachable(endpoint) : true;
  }

  #add(): Replica {
    if (!this.spec) throw new Error('module spec missing');
    const max = this.options.maxServers ?? Number.POSITIVE_INFINITY;
    if (this.processesOfAll() >= max) {
      throw new ServiceError(
        'SERVER_LIMIT',
        `${max} module-server processes run already (server.max_module_servers): ${this.spec.name} cannot start another`,
      );
    }
    const replica = new Replica(this.spec, this.options, `starting-${this.#next++}`);
    this.#replicas.push(replica);
    return replica;
  }
}
