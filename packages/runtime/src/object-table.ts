/**
 * Remote references, per client session. A session lives as long as its client keeps renewing the
 * lease (every invocation renews it, and idle clients send an empty program); a session whose lease
 * has run out is dropped with all its objects, so a client that disappears leaks nothing.
 */
import { Code, SpliceError } from '@splice-orc/protocol';

/** Options of {@link ObjectTable}. */
export interface ObjectTableOptions {
  /** How long a session outlives its last invocation, in ms. Default 60 000. */
  leaseMs?: number;
  /** Most objects one session may hold at once. Default 100 000. */
  maxObjectsPerSession?: number;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

interface Session {
  objects: Map<number, object>;
  expiresAt: number;
}

/** The objects that remote references point at, grouped by client session. */
export class ObjectTable {
  readonly leaseMs: number;
  readonly #maxObjects: number;
  readonly #now: () => number;
  readonly #sessions = new Map<string, Session>();
  #nextId = 1;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(options: ObjectTableOptions = {}) {
    this.leaseMs = options.leaseMs ?? 60_000;
    this.#maxObjects = options.maxObjectsPerSession ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  /** Starts dropping expired sessions in the background, every quarter lease. */
  startSweeping(): void {
    this.#sweeper ??= setInterval(() => this.sweep(), Math.max(250, this.leaseMs / 4)).unref();
  }

  /** Stops the background sweep. */
  stopSweeping(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /** Renews a session's lease, creating the session if it is new. */
  touch(sessionId: string): void {
    const session = this.#sessions.get(sessionId);
    const expiresAt = this.#now() + this.leaseMs;
    if (session) session.expiresAt = expiresAt;
    else this.#sessions.set(sessionId, { objects: new Map(), expiresAt });
  }

  /** Stores an object for a session and returns its new id. */
  add(sessionId: string, value: object): number {
    const session = this.#session(sessionId);
    if (session.objects.size >= this.#maxObjects) {
      throw new SpliceError(
        Code.RESOURCE_EXHAUSTED,
        `session holds ${this.#maxObjects} remote references already: release some before making more`,
      );
    }
    const id = this.#nextId++;
    session.objects.set(id, value);
    return id;
  }

  /** The object behind an id, or NOT_FOUND if it was released or its session expired. */
  get(sessionId: string, id: number): object {
    const value = this.#sessions.get(sessionId)?.objects.get(id);
    if (value === undefined) {
      throw new SpliceError(Code.NOT_FOUND, `remote reference ${id} was released or its lease expired`, {
        details: { id },
      });
    }
    return value;
  }

  /** Frees objects; ids that are already gone are ignored, so release is idempotent. */
  release(sessionId: string, ids: readonly number[]): void {
    const objects = this.#sessions.get(sessionId)?.objects;
    if (objects) for (const id of ids) objects.delete(id);
  }

  /** Drops every session whose lease has run out; returns how many objects were freed. */
  sweep(): number {
    const now = this.#now();
    let freed = 0;
    for (const [id, session] of this.#sessions) {
      if (session.expiresAt <= now) {
        freed += session.objects.size;
        this.#sessions.delete(id);
      }
    }
    return freed;
  }

  /** Sessions and objects held now, for health and tests. */
  stats(): { sessions: number; objects: number } {
    let objects = 0;
    for (const s of this.#sessions.values()) objects += s.objects.size;
    return { sessions: this.#sessions.size, objects };
  }

  #session(sessionId: string): Session {
    let session = this.#sessions.get(sessionId);
    if (!session) {
      this.touch(sessionId);
      session = this.#sessions.get(sessionId)!;
    }
    return session;
  }
}
