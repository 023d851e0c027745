/**
 * What the Kubernetes backend keeps of one module between API requests, and the rules that keep
 * concurrent operations on it apart (it makes no request itself):
 * - Changes to the module's objects (create, roll, scale, delete) run one at a time, in the order
 *   they were asked for: each reads what the one before it left, then writes.
 * - Creation is single-flight: concurrent starts share one.
 * - A stop is counted when it begins, so a start that waits for a pod fails only for a stop that
 *   began after it; the next start waits for the stop to end before it brings the module back.
 * - `starting` and `stopping` are what the status shows while no pod says more; scale-up is refused
 *   while stopping.
 */
export class KubeModule {
  /** The tail of the queue of object changes; undefined when none is queued. */
  #tail: Promise<unknown> | undefined;
  /** The creation under way: resolves with the config hash of the Deployment. */
  #creating: Promise<string | undefined> | undefined;
  /** The latest stop under way. */
  #stop: Promise<void> | undefined;
  #stopsBegun = 0;
  #starting = false;
  #stopping = false;

  /** A start waits for a ready pod. */
  get starting(): boolean {
    return this.#starting;
  }

  /** A stop is under way (until its pods are gone). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Runs `change` once the module's earlier changes have ended, however they ended. */
  serial<T>(change: () => Promise<T>): Promise<T> {
    const run = (this.#tail ?? Promise.resolve()).then(change, change);
    const tail = run.catch(() => undefined);
    this.#tail = tail;
    void tail.then(() => {
      if (this.#tail === tail) this.#tail = undefined;
    });
    return run;
  }

  /**
   * Runs `create` as a change, unless a creation is under way: then resolves with that one's
   * result (the config hash the Deployment has).
   */
  ensure(create: () => Promise<string | undefined>): Promise<string | undefined> {
    this.#creating ??= this.serial(create).finally(() => {
      this.#creating = undefined;
    });
    return this.#creating;
  }

  /** Settles once the creation under way, if any, has ended (never rejects). */
  async afterCreate(): Promise<void> {
    await this.#creating?.catch(() => undefined);
  }

  /** Runs `start` with the module marked starting. */
  async start<T>(start: () => Promise<T>): Promise<T> {
    this.#starting = true;
    try {
      return await start();
    } finally {
      this.#starting = false;
    }
  }

  /** Runs `stop` (an async function) with the module marked stopping, counted as a stop from now on. */
  stop(stop: () => Promise<void>): Promise<void> {
    this.#stopsBegun += 1;
    this.#stopping = true;
    const stopping = stop().finally(() => {
      this.#stopping = false;
      if (this.#stop === stopping) this.#stop = undefined;
    });
    this.#stop = stopping;
    return stopping;
  }

  /** Settles once the latest stop has ended (never rejects). */
  async afterStop(): Promise<void> {
    await this.#stop?.catch(() => undefined);
  }

  /** A mark to tell, with {@link stoppedSince}, whether a stop began after it. */
  stopMark(): number {
    return this.#stopsBegun;
  }

  /** True when a stop began after `mark` was taken. */
  stoppedSince(mark: number): boolean {
    return this.#stopsBegun !== mark;
  }
}
