/**
 * The cold-start queue: calls that arrive while their module starts wait for that one start, in a
 * bounded queue with a deadline. A full queue or a passed deadline is a clear 503, never a hang.
 */
import { Code, withDeadline } from '@splice-orc/protocol';
import type { Backend } from '../backends/backend.js';
import type { ModuleSpec } from '../config.js';
import { ServiceError } from '../errors.js';

/** What the queue keeps per module. */
export interface WaitingRoom {
  /** Calls waiting now. */
  queued: number;
  /** The start under way, shared by the calls that wait for it. */
  coldStart: Promise<void> | undefined;
}

/** Options of {@link ColdStartQueue}. */
export interface ColdStartOptions {
  backend: Backend;
  /** Most calls waiting per module. */
  limit: number;
  /** Longest wait, ms. */
  timeoutMs: number;
  /** Called after each start that calls waited for, with its duration in ms. */
  onColdStart: (module: string, ms: number) => void;
  /** Called when a start that calls waited for fails, with what it threw. */
  onStartFailed: (module: string, error: unknown) => void;
}

export class ColdStartQueue {
  constructor(readonly options: ColdStartOptions) {}

  /** Waits (in the module's room) until the module has a ready server. */
  async wait(spec: ModuleSpec, room: WaitingRoom, signal?: AbortSignal): Promise<void> {
    const { limit, timeoutMs } = this.options;
    if (room.queued >= limit) {
      throw new ServiceError(
        'QUEUE_FULL',
        `${limit} calls already wait for ${spec.name} to start; try again shortly`,
      );
    }
    room.queued++;
    try {
      await withDeadline(this.#start(spec, room), {
        timeoutMs,
        signal,
        onTimeout: () =>
          new ServiceError('COLD_START_TIMEOUT', `${spec.name} did not become ready within ${timeoutMs} ms`),
        onAbort: () => new ServiceError(Code.CANCELLED, 'the client went away'),
      });
    } finally {
      room.queued--;
    }
  }

  #start(spec: ModuleSpec, room: WaitingRoom): Promise<void> {
    if (!room.coldStart) {
      const t0 = performance.now();
      room.coldStart = this.options.backend
        .start(spec)
        .then(
          () => this.options.onColdStart(spec.name, performance.now() - t0),
          (error: unknown) => {
            this.options.onStartFailed(spec.name, error);
            throw error;
          },
        )
        .finally(() => {
          room.coldStart = undefined;
        });
    }
    return room.coldStart;
  }
}
