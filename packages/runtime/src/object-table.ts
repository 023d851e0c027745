/**
 * Remote references, per client session. A session lives as long as its client keeps renewing the
 * lease (every invocation renews it, and idle clients send an empty program); a session whose lease
 * has run out is dropped with all its objects, so a client that disappears leaks nothing.
 *
 * Everything is bounded, so that callers cannot hoard a server's memory: objects per session,
 * objects over all sessions, and live sessions. A new session beyond the last limit takes the
 * place of the least recently used session that holds nothing (dropping it loses nothing); only
 * when every session holds objects is it refused.
 */
import { Code, SpliceError } from '@splice-orc/protocol';

/** Options of {@link ObjectTable}. */
export interface ObjectTableOptions {
  /** How long a session outlives its last invocation, in ms. Default 60 000. */
  leaseMs?: number;
  /** Most objects one session may hold at once. Default 100 000. */
  maxObjectsPerSession?: number;
  /** Most objects all sessions together may hold. Default 250 000. */
  maxObjects?: number;
  /** Most live sessions. Default 10 000. */
  maxSessions?: number;
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
  readonly #maxPerSession: number;
  readonly #maxObjects: number;
  readonly #maxSessions: number;
  readonly #now: () => number;
  /** In order of last use: the first entry is the least recently used. */
  readonly #sessions = new Map<string, Session>();
  #objects = 0;
  #nextId = 1;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(options: ObjectTableOptions = {}) {
    this.leaseMs = options.leaseMs ?? 60_000;
    this.#maxPerSession = options.maxObjectsPerSession ?? 100_000;
    this.#maxObjects = options.maxObjects ?? 250_000;
    this.#maxSessions = options.maxSessions ?? 10_000;
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

  /**
   * Renews a session's lease, creating the session if it is new. RESOURCE_EXHAUSTED when a new
   * session would pass the limit and every live session holds objects.
   */
  touch(sessionId: string): void {
    const session = this.#sessions.get(sessionId);
    const expiresAt = this.#now() + this.leaseMs;
    if (session) {
      session.expiresAt = expiresAt;
      // Re-inserted: the map's order is the order of last use.
      this.#sessions.delete(sessionId);
      this.#sessions.set(sessionId, session);
      return;
    }
    if (this.#sessions.size >= this.#maxSessions) this.#makeRoom();
    this.#sessions.set(sessionId, { objects: new Map(), expiresAt });
  }

  /** Stores an object for a session and returns its new id. */
  add(sessionId: string, value: object): number {
    const session = this.#session(sessionId);
    if (session.objects.size >= this.#maxPerSession) {
      throw new SpliceError(
        Code.RESOURCE_EXHAUSTED,
        `session holds ${this.#maxPerSession} remote references already (the per-session limit): release some before making more`,
        { details: { limit: 'objects_per_session', max: this.#maxPerSession } },
      );
    }
    if (this.#objects >= this.#maxObjects) {
      throw new SpliceError(
        Code.RESOURCE_EXHAUSTED,
        `the module-server holds ${this.#maxObjects} remote references over all sessions (its limit): release some before making more`,
        { details: { limit: 'objects_per_server', max: this.#maxObjects } },
      );
    }
    const id = this.#nextId++;
    session.objects.set(id, value);
    this.#objects++;
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
    if (objects) for (const id of ids) if (objects.delete(id)) this.#objects--;
  }

  /** Drops every session whose lease has run out; returns how many objects were freed. */
  sweep(): number {
    const now = this.#now();
    let freed = 0;
    for (const [id, session] of this.#sessions) {
      if (session.expiresAt <= now) {
        freed += session.objects.size;
        this.#drop(id, session);
      }
    }
    return freed;
  }

  /** Sessions and objects held now, for health and tests. */
  stats(): { sessions: number; objects: number } {
    return { sessions: this.#sessions.size, objects: this.#objects };
  }

  /** Drops the least recently used session that holds nothing, or refuses a new session. */
  #makeRoom(): void {
    this.sweep();
    if (this.#sessions.size < this.#maxSessions) return;
    for (const [id, session] of this.#sessions) {
      if (session.objects.size === 0) {
        this.#drop(id, session);
        return;
      }
    }
    throw new SpliceError(
      Code.RESOURCE_EXHAUSTED,
      `the module-server has ${this.#maxSessions} client sessions holding references (its limit): try again when leases expire`,
      { details: { limit: 'sessions_per_server', max: this.#maxSessions } },
    );
  }

  #drop(id: string, session: Session): void {
    this.#objects -= session.objects.size;
    this.#sessions.delete(id);
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
