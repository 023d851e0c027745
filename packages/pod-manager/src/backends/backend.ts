/**
 * What the rest of the pod-manager knows of where module-servers run. The local backend runs child
 * processes on this machine; a Kubernetes backend runs pods. Nothing outside `backends/` imports an
 * implementation's SDK.
 */
import type { ModuleSpec } from '../config.js';

/** Life of a module's servers, as `GET /modules/:name` shows it. */
export type ModuleState = 'absent' | 'installing' | 'starting' | 'ready' | 'failed' | 'stopping';

/** A snapshot of one module's servers. */
export interface ModuleStatus {
  state: ModuleState;
  /** `host:port` of the ready server. */
  endpoint?: string | undefined;
  /** Process id (local backend). */
  pid?: number | undefined;
  /** Pod name (Kubernetes backend). */
  pod?: string | undefined;
  /** ISO time the current server became ready. */
  startedAt?: string | undefined;
  /** How often a dead server was restarted. */
  restarts: number;
  /** Why the module failed (state `failed`), or why it is restarting. */
  reason?: string | undefined;
}

/** Options of {@link Backend.start}. */
export interface StartOptions {
  /** Gives up waiting (the start itself goes on unless the backend decides otherwise). */
  signal?: AbortSignal | undefined;
}

/** Starts, stops and reports on the servers of modules. */
export interface Backend {
  /**
   * Ensures a ready server for the module and resolves with its endpoint. Single-flight: while a
   * start is under way every caller waits for that same start.
   */
  start(spec: ModuleSpec, options?: StartOptions): Promise<string>;
  /** Stops the module's servers; resolves once they are gone. Stopping an absent module is a no-op. */
  stop(name: string): Promise<void>;
  /** The module's current state. */
  status(name: string): ModuleStatus;
  /**
   * Tells the backend a call found the endpoint unreachable. Resolves true when that server is gone
   * (a restart is under way, which `start` waits for), false when it still seems to run.
   */
  reportUnreachable(name: string, endpoint: string): Promise<boolean>;
  /** Stops everything; no process or pod it started outlives this. */
  close(): Promise<void>;
}
