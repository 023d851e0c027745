/**
 * A Backend whose servers exist only as records in memory: starts take `startMs`, may be made to
 * fail, and every action is logged. For fast tests of what sits above the Backend interface (the
 * registry, the cold-start queue, the lifecycle loop), passed to `buildApp` as its `backend`.
 * Nothing listens at its endpoints: forwarding to them needs an invoker that answers for them.
 */
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';
import type { Backend, ModuleStatus, ReadyReplica, ReplicaStatus, ReplicaUsage } from './backend.js';

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions {
  /** How long a start takes, ms. Default 0. */
  startMs?: number;
}

/** The in-memory backend and what it lets a test see and steer. */
export interface MemoryBackend extends Backend {
  /** Every action, in order: `start m`, `add m`, `remove m <id>`, `stop m`... */
  readonly actions: string[];
  /** Makes the next starts of a module fail with this error (undefined: succeed). */
  failStarts(module: string, error: Error | undefined): void;
  /** Takes a replica away as a crash would. */
  crash(module: string, id: string): void;
}

interface Server extends ReadyReplica {
  state: 'starting' | 'ready';
}

/** Creates an in-memory backend. */
export function createMemoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  const servers = new Map<string, Server[]>();
  const failures = new Map<string, Error>();
  const starting = new Map<string, Promise<void>>();
  const actions: string[] = [];
  let next = 1;
  const of = (name: string) => servers.get(name) ?? [];

  const boot = async (spec: ModuleSpec): Promise<void> => {
    const server: Server = {
      id: `mem-${next}`,
      endpoint: `memory:${next}`,
      secret: `secret-${next}`,
      state: 'starting',
    };
    next++;
    servers.set(spec.name, [...of(spec.name), server]);
    await new Promise((resolve) => setTimeout(resolve, options.startMs ?? 0));
    const failure = failures.get(spec.name);
    if (failure) {
      servers.set(
        spec.name,
        of(spec.name).filter((s) => s !== server),
      );
      throw failure;
    }
    server.state = 'ready';
  };

  return {
    actions,
    failStarts: (module, error) => (error ? failures.set(module, error) : failures.delete(module)),
    crash: (module, id) =>
      servers.set(
        module,
        of(module).filter((s) => s.id !== id),
      ),
    start(spec) {
      if (of(spec.name).some((s) => s.state === 'ready')) return Promise.resolve();
      let pending = starting.get(spec.name);
      if (!pending) {
        actions.push(`start ${spec.name}`);
        pending = boot(spec).finally(() => starting.delete(spec.name));
        starting.set(spec.name, pending);
      }
      return pending;
    },
    ready: (name) =>
      of(name)
        .filter((s) => s.state === 'ready')
        .map(({ id, endpoint, secret }) => ({ id, endpoint, secret })),
    prepare: async () => undefined,
    reconfigure: async (spec) => {
      actions.push(`reconfigure ${spec.name}`);
    },
    resume: async () => undefined,
    async addReplica(spec) {
      actions.push(`add ${spec.name}`);
      await boot(spec);
    },
    async removeReplica(name, id) {
      actions.push(`remove ${name} ${id}`);
      servers.set(
        name,
        of(name).filter((s) => s.id !== id),
      );
    },
    async stop(name) {
      if (of(name).length > 0) actions.push(`stop ${name}`);
      servers.delete(name);
    },
    status(name): ModuleStatus {
      const replicas: ReplicaStatus[] = of(name).map((s) => ({
        id: s.id,
        state: s.state,
        endpoint: s.state === 'ready' ? s.endpoint : undefined,
      }));
      const state = replicas.some((r) => r.state === 'ready')
        ? 'ready'
        : replicas.length
          ? 'starting'
          : 'absent';
      return { state, replicas, restarts: 0 };
    },
    usage: async (name): Promise<ReplicaUsage[]> =>
      of(name).map((s) => ({ id: s.id, unavailable: 'in memory' })),
    reportUnreachable: async (name, endpoint) => !of(name).some((s) => s.endpoint === endpoint),
    close: async () => {
      servers.clear();
    },
  };
}

/** The error a failed start of the memory backend may be made to throw. */
export function startFailure(module: string): ServiceError {
  return new ServiceError('MODULE_START_FAILED', `${module} failed to start (in memory)`);
}
