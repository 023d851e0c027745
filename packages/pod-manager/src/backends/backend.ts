/**
 * What the rest of the pod-manager knows of where module-servers run. The local backend runs child
 * processes on this machine; a Kubernetes backend runs pods. Nothing outside `backends/` imports an
 * implementation's SDK. Routing, queuing and scaling decisions are made above this interface, the
 * same for every backend.
 */
import type { Rest } from '@splice-orc/protocol';
import type { ModuleSpec } from '../config.js';

/** Life of a module's servers, as `GET /modules/:name` shows it. */
export type ModuleState = Rest.ModuleState;

/** One server of a module (its JSON form in the REST API). */
export type ReplicaStatus = Rest.ReplicaStatus;

/** Module states from least to most advanced. */
const PROGRESS: readonly ModuleState[] = ['absent', 'failed', 'stopping', 'installing', 'starting', 'ready'];

/**
 * A module's state from its replicas', the same for every backend: the most advanced replica's
 * (draining counts as stopping), at least `base` (what the backend is doing for the module); but a
 * failed replica makes the module failed unless one is ready, with that replica's reason.
 */
export function rollUp(
  replicas: readonly ReplicaStatus[],
  base: ModuleState,
): Pick<ModuleStatus, 'state' | 'reason'> {
  let state = base;
  for (const r of replicas) {
    const s: ModuleState = r.state === 'draining' ? 'stopping' : r.state;
    if (PROGRESS.indexOf(s) > PROGRESS.indexOf(state)) state = s;
  }
  const failed = replicas.find((r) => r.state === 'failed');
  if (failed && state !== 'ready') return { state: 'failed', reason: failed.reason };
  return { state, reason: undefined };
}

/** A snapshot of one module's servers. */
export interface ModuleStatus {
  /** ready when any replica is; otherwise the most advanced state of a replica. */
  state: ModuleState;
  replicas: ReplicaStatus[];
  /** How often a dead server was restarted. */
  restarts: number;
  /** Why the module failed (state `failed`). */
  reason?: string | undefined;
}

/** A server that takes calls. */
export interface ReadyReplica {
  id: string;
  endpoint: string;
  /** The credential its Invoke and Stats calls carry (made by the backend that started it). */
  secret: string;
  /**
   * Where its callback endpoint listens (INVOKE.md 3.7) when it is not `endpoint`: a Node server
   * serves it on a thread and port of its own, so that a module blocked on a callback does not stop it.
   */
  callbackEndpoint?: string | undefined;
}

/** Resource use of one server, or why it is not known. */
export type ReplicaUsage = Rest.ReplicaUsage;

/** Options of {@link Backend.start}. */
export interface StartOptions {
  /** Gives up waiting (the start itself goes on). */
  signal?: AbortSignal | undefined;
}

/** Starts, stops and reports on the servers of modules. */
export interface Backend {
  /**
   * Ensures at least one ready server for the module (starting one if there is none) and resolves
   * once there is. Single-flight: concurrent callers wait for the same start.
   */
  start(spec: ModuleSpec, options?: StartOptions): Promise<void>;
  /** The servers that take calls now (not starting, not draining). */
  ready(name: string): ReadyReplica[];
  /**
   * Makes what the module needs available ahead of a start (the local backend installs it), so
   * that a config change can be checked before it is applied. Rejects with INSTALL_FAILED.
   */
  prepare(spec: ModuleSpec): Promise<void>;
  /**
   * The module's config changed (`PUT /modules/:name/config`): servers running the old config are
   * replaced. The local backend stops them when what is installed changed (the next call starts
   * new ones); the Kubernetes backend patches the Deployment, which rolls its pods.
   */
  reconfigure(spec: ModuleSpec, previous: ModuleSpec): Promise<void>;
  /**
   * Picks up what an earlier pod-manager left running, at start-up: the Kubernetes backend adopts
   * the modules' Deployments and rolls those whose config changed; the local backend has nothing
   * to pick up (its servers never outlive it).
   */
  resume(specs: readonly ModuleSpec[]): Promise<void>;
  /** Adds a server (scale up); resolves when it is ready. */
  addReplica(spec: ModuleSpec): Promise<void>;
  /**
   * Removes a server (scale down): it takes no new calls at once, finishes those in flight within
   * the grace period, then stops.
   */
  removeReplica(name: string, id: string): Promise<void>;
  /** Stops all the module's servers, draining each. Stopping an absent module is a no-op. */
  stop(name: string): Promise<void>;
  /** The module's current state. */
  status(name: string): ModuleStatus;
  /**
   * Tells the backend a call found the endpoint unreachable. Resolves true when that server is gone
   * (a restart is under way, which `start` waits for), false when it still seems to run.
   */
  reportUnreachable(name: string, endpoint: string): Promise<boolean>;
  /**
   * Why server `id` of the module ended while a call that began at `since` (epoch ms) was in
   * flight, as the platform reports it (Kubernetes: the container's termination, such as
   * `OOMKilled`), waiting at most `waitMs` for the report; undefined when none came. Optional: a
   * backend without it leaves the call's own error as it is.
   */
  whyEnded?(name: string, id: string, o: { since: number; waitMs: number }): Promise<string | undefined>;
  /** CPU and memory of each server of the module, as far as the platform tells. */
  usage(name: string): Promise<ReplicaUsage[]>;
  /**
   * Releases the backend. The local backend stops every process it started; the Kubernetes
   * backend stops watching and leaves the Deployments to the cluster, for the next pod-manager to adopt.
   */
  close(): Promise<void>;
}
