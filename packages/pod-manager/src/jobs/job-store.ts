/**
 * Where jobs, their splits and their results are kept, behind a small interface: an embedded
 * SQLite database (better-sqlite3, WAL) in a file under the pod-manager's state directory by
 * default. Results are stored per input, once (the primary key makes a second answer of the same
 * split a no-op), and read back in pages from an offset: nothing is ever re-sent cumulatively.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Rest } from '@splice-orc/protocol';
import Database from 'better-sqlite3';

/** A job as stored. `spec` is the spec without its inputs (those are in the splits). */
export interface JobRecord {
  id: string;
  seq: number;
  state: Rest.JobState;
  spec: Omit<Rest.JobSpec, 'inputs'>;
  total: number;
  workers: number;
  /** Replicas it needs from the limits: workers, plus one for speculative copies when asked. */
  reserved: number;
  splitsTotal: number;
  splitsDone: number;
  done: number;
  failed: number;
  retries: number;
  speculative: number;
  createdAt: number;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  error: string | undefined;
}

/** One split as stored (times are epoch ms). */
export interface SplitRecord {
  index: number;
  first: number;
  count: number;
  state: 'pending' | 'running' | 'done';
  attempts: number;
  copies: number;
  replica: string | undefined;
  createdAt: number;
  assignedAt: number | undefined;
  startedAt: number | undefined;
  finishedAt: number | undefined;
}

/** A new job: its record's fields and its splits' inputs (msgpack-encoded lists). */
export interface NewJob {
  id: string;
  spec: Omit<Rest.JobSpec, 'inputs'>;
  total: number;
  workers: number;
  reserved: number;
  splits: Array<{ first: number; count: number; inputs: Uint8Array }>;
}

/** One stored result. `value` is msgpack: the value, or (failed) the error. */
export interface StoredResult {
  index: number;
  position: number;
  value: Buffer;
  failed: boolean;
}

/** What the scheduler needs of a store; a Postgres store would implement the same. */
export interface JobStore {
  create(job: NewJob): JobRecord;
  get(id: string): JobRecord | undefined;
  /** The newest `limit` jobs, newest first. */
  /** The newest `limit` jobs, only those in `state` when it is given. */
  list(limit: number, state?: Rest.JobState): JobRecord[];
  /** Queued and running jobs, oldest first (what a restarted pod-manager picks up). */
  unfinished(): JobRecord[];
  setState(id: string, state: Rest.JobState, error?: string): void;
  /** A job's splits in index order; with `page`, only `limit` of them from index `offset`. */
  splits(id: string, page?: { offset: number; limit: number }): SplitRecord[];
  splitInputs(id: string, index: number): Uint8Array;
  /** A split attempt was sent to a replica. */
  splitStarted(id: string, index: number, replica: string, copy: boolean): void;
  /** A split attempt failed and will be tried again. */
  splitRetried(id: string, index: number): void;
  /**
   * Stores a split's results (one per input, in input order) and marks it done, in one
   * transaction; false when the split was done already (another copy won).
   */
  finishSplit(id: string, index: number, results: Array<{ value: Uint8Array; failed: boolean }>): boolean;
  /** Splits left running by a pod-manager that stopped become pending again. */
  requeueRunning(id: string): void;
  /** Results from `offset` (input index, or completion position), at most `limit`. */
  results(id: string, order: 'input' | 'completion', offset: number, limit: number): StoredResult[];
  /** Jobs by state. */
  counts(): Partial<Record<Rest.JobState, number>>;
  /** Deletes the oldest finished jobs past `keep`. */
  prune(keep: number): void;
  close(): void;
}

interface JobRow {
  id: string;
  seq: number;
  state: Rest.JobState;
  spec: string;
  total: number;
  workers: number;
  reserved: number;
  splits_total: number;
  splits_done: number;
  done: number;
  failed: number;
  retries: number;
  speculative: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  error: string | null;
}

interface SplitRow {
  idx: number;
  first: number;
  count: number;
  state: SplitRecord['state'];
  attempts: number;
  copies: number;
  replica: string | null;
  created_at: number;
  assigned_at: number | null;
  started_at: number | null;
  finished_at: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL, spec TEXT NOT NULL,
  total INTEGER NOT NULL, workers INTEGER NOT NULL, reserved INTEGER NOT NULL,
  splits_total INTEGER NOT NULL, splits_done INTEGER NOT NULL DEFAULT 0,
  done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0, speculative INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS splits (
  job_id TEXT NOT NULL, idx INTEGER NOT NULL, first INTEGER NOT NULL, count INTEGER NOT NULL,
  inputs BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0, copies INTEGER NOT NULL DEFAULT 0, replica TEXT,
  created_at INTEGER NOT NULL, assigned_at INTEGER, started_at INTEGER, finished_at INTEGER,
  PRIMARY KEY (job_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
  job_id TEXT NOT NULL, idx INTEGER NOT NULL, position INTEGER NOT NULL,
  value BLOB NOT NULL, failed INTEGER NOT NULL,
  PRIMARY KEY (job_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_by_position ON results (job_id, position);
`;

/** How long opening waits for another process's lock on the jobs database (one that is closing), ms. */
const LOCK_WAIT_MS = 2_000;

const SPLIT_COLUMNS =
  'idx, first, count, state, attempts, copies, replica, created_at, assigned_at, started_at, finished_at';

/**
 * Opens (creating when missing) the SQLite store at `path`, for this process alone: a second
 * pod-manager on the same file (two replicas on one volume, two `serve`s on one state directory)
 * would resume and run the same jobs, so it is refused at start with an error that says so. The
 * lock is the file's own (SQLite's exclusive locking mode), so a killed pod-manager leaves none.
 */
export function openSqliteJobStore(path: string): JobStore {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${LOCK_WAIT_MS}`);
    db.pragma('locking_mode = EXCLUSIVE');
    // WAL: a write is one append; NORMAL sync is durable across a process kill (the WAL is in the
    // OS's hands once written), which is what a SIGKILL test checks.
    db.pragma('journal_mode = WAL');
    // The first write takes the lock, and exclusive mode keeps it until close.
    db.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (error) {
    db.close();
    if ((error as { code?: string }).code === 'SQLITE_BUSY') {
      throw new Error(
        `the jobs database ${path} is in use by another pod-manager: give each pod-manager its own (jobs.database, or server.state_file or cache_dir, beside which it is kept)`,
        { cause: error },
      );
    }
    throw error;
  }
  db.pragma('synchronous = NORMAL');
  db.exec(SCHEMA);
  const q = {
    insertJob: db.prepare(
      `INSERT INTO jobs (id, seq, state, spec, total, workers, reserved, splits_total, created_at)
       VALUES (@id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), 'queued', @spec, @total, @workers, @reserved, @splits_total, @created_at)`,
    ),
    insertSplit: db.prepare(
      'INSERT INTO splits (job_id, idx, first, count, inputs, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    job: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?'),
    list: db.prepare<[number], JobRow>('SELECT * FROM jobs ORDER BY seq DESC LIMIT ?'),
    listInState: db.prepare<[string, number], JobRow>(
      'SELECT * FROM jobs WHERE state = ? ORDER BY seq DESC LIMIT ?',
    ),
    unfinished: db.prepare<[], JobRow>(
      "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY (state = 'queued'), seq",
    ),
    setState: db.prepare(
      `UPDATE jobs SET state = @state, error = COALESCE(@error, error),
         started_at = CASE WHEN @state = 'running' THEN COALESCE(started_at, @now) ELSE started_at END,
         finished_at = CASE WHEN @state IN ('succeeded', 'failed', 'cancelled') THEN @now ELSE finished_at END
       WHERE id = @id`,
    ),
    splits: db.prepare<[string], SplitRow>(
      `SELECT ${SPLIT_COLUMNS} FROM splits WHERE job_id = ? ORDER BY idx`,
    ),
    splitPage: db.prepare<[string, number, number], SplitRow>(
      `SELECT ${SPLIT_COLUMNS} FROM splits WHERE job_id = ? AND idx >= ? ORDER BY idx LIMIT ?`,
    ),
    inputs: db.prepare<[string, number], { inputs: Buffer }>(
      'SELECT inputs FROM splits WHERE job_id = ? AND idx = ?',
    ),
    started: db.prepare(
      `UPDATE splits SET state = CASE WHEN state = 'done' THEN 'done' ELSE 'running' END,
         attempts = attempts + 1, copies = copies + @copy, replica = @replica,
         assigned_at = COALESCE(assigned_at, @now), started_at = @now
       WHERE job_id = @id AND idx = @idx`,
    ),
    countCopy: db.prepare('UPDATE jobs SET speculative = speculative + 1 WHERE id = ?'),
    retried: db.prepare(
      "UPDATE splits SET state = 'pending' WHERE job_id = ? AND idx = ? AND state != 'done'",
    ),
    countRetry: db.prepare('UPDATE jobs SET retries = retries + 1 WHERE id = ?'),
    finish: db.prepare(
      "UPDATE splits SET state = 'done', finished_at = ? WHERE job_id = ? AND idx = ? AND state != 'done'",
    ),
    splitFirst: db.prepare<[string, number], { first: number }>(
      'SELECT first FROM splits WHERE job_id = ? AND idx = ?',
    ),
    position: db.prepare<[string], { n: number }>('SELECT done + failed AS n FROM jobs WHERE id = ?'),
    insertResult: db.prepare(
      'INSERT OR IGNORE INTO results (job_id, idx, position, value, failed) VALUES (?, ?, ?, ?, ?)',
    ),
    countDone: db.prepare(
      'UPDATE jobs SET splits_done = splits_done + 1, done = done + @ok, failed = failed + @failed WHERE id = @id',
    ),
    requeue: db.prepare("UPDATE splits SET state = 'pending' WHERE job_id = ? AND state = 'running'"),
    byIndex: db.prepare<
      [string, number, number],
      { idx: number; position: number; value: Buffer; failed: number }
    >('SELECT idx, position, value, failed FROM results WHERE job_id = ? AND idx >= ? ORDER BY idx LIMIT ?'),
    byPosition: db.prepare<
      [string, number, number],
      { idx: number; position: number; value: Buffer; failed: number }
    >(
      'SELECT idx, position, value, failed FROM results WHERE job_id = ? AND position >= ? ORDER BY position LIMIT ?',
    ),
    oldFinished: db.prepare<[number], { id: string }>(
      "SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') ORDER BY seq DESC LIMIT -1 OFFSET ?",
    ),
    deleteJob: db.prepare('DELETE FROM jobs WHERE id = ?'),
    counts: db.prepare<[], { state: Rest.JobState; n: number }>(
      'SELECT state, COUNT(*) AS n FROM jobs GROUP BY state',
    ),
    deleteSplits: db.prepare('DELETE FROM splits WHERE job_id = ?'),
    deleteResults: db.prepare('DELETE FROM results WHERE job_id = ?'),
  };

  const create = db.transaction((job: NewJob) => {
    const now = Date.now();
    q.insertJob.run({
      id: job.id,
      spec: JSON.stringify(job.spec),
      total: job.total,
      workers: job.workers,
      reserved: job.reserved,
      splits_total: job.splits.length,
      created_at: now,
    });
    job.splits.forEach((s, i) => {
      q.insertSplit.run(job.id, i, s.first, s.count, s.inputs, now);
    });
  });
  const finish = db.transaction(
    (id: string, index: number, results: Array<{ value: Uint8Array; failed: boolean }>) => {
      if (q.finish.run(Date.now(), id, index).changes === 0) return false;
      const first = q.splitFirst.get(id, index)?.first ?? 0;
      let position = q.position.get(id)?.n ?? 0;
      let failed = 0;
      results.forEach((r, i) => {
        q.insertResult.run(id, first + i, position++, r.value, r.failed ? 1 : 0);
        if (r.failed) failed++;
      });
      q.countDone.run({ id, ok: results.length - failed, failed });
      return true;
    },
  );
  const retried = db.transaction((id: string, index: number) => {
    q.retried.run(id, index);
    q.countRetry.run(id);
  });
  const started = db.transaction((id: string, index: number, replica: string, copy: boolean) => {
    q.started.run({ id, idx: index, replica, copy: copy ? 1 : 0, now: Date.now() });
    if (copy) q.countCopy.run(id);
  });
  const prune = db.transaction((keep: number) => {
    for (const { id } of q.oldFinished.all(keep)) {
      q.deleteResults.run(id);
      q.deleteSplits.run(id);
      q.deleteJob.run(id);
    }
  });
  const toResult = (r: { idx: number; position: number; value: Buffer; failed: number }): StoredResult => ({
    index: r.idx,
    position: r.position,
    value: r.value,
    failed: r.failed === 1,
  });

  return {
    create(job) {
      create(job);
      return recordFrom(q.job.get(job.id) as JobRow);
    },
    get: (id) => {
      const row = q.job.get(id);
      return row ? recordFrom(row) : undefined;
    },
    list: (limit, state) => (state ? q.listInState.all(state, limit) : q.list.all(limit)).map(recordFrom),
    unfinished: () => q.unfinished.all().map(recordFrom),
    setState: (id, state, error) => {
      q.setState.run({ id, state, error: error ?? null, now: Date.now() });
    },
    splits: (id, page) =>
      (page ? q.splitPage.all(id, page.offset, page.limit) : q.splits.all(id)).map(splitFrom),
    splitInputs: (id, index) => {
      const row = q.inputs.get(id, index);
      if (!row) throw new Error(`job ${id} has no split ${index}`);
      return row.inputs;
    },
    splitStarted: (id, index, replica, copy) => started(id, index, replica, copy),
    splitRetried: (id, index) => retried(id, index),
    finishSplit: (id, index, results) => finish(id, index, results),
    requeueRunning: (id) => {
      q.requeue.run(id);
    },
    results: (id, order, offset, limit) => {
      if (order === 'completion') return q.byPosition.all(id, offset, limit).map(toResult);
      // Input order: only the unbroken run from the offset (a later input may not be done yet).
      const out: StoredResult[] = [];
      let expected = offset;
      for (const row of q.byIndex.all(id, offset, limit)) {
        if (row.idx !== expected) break;
        out.push(toResult(row));
        expected++;
      }
      return out;
    },
    counts: () => Object.fromEntries(q.counts.all().map((r) => [r.state, r.n])),
    prune: (keep) => prune(keep),
    close: () => db.close(),
  };
}

function recordFrom(row: JobRow): JobRecord {
  return {
    id: row.id,
    seq: row.seq,
    state: row.state,
    spec: JSON.parse(row.spec) as JobRecord['spec'],
    total: row.total,
    workers: row.workers,
    reserved: row.reserved,
    splitsTotal: row.splits_total,
    splitsDone: row.splits_done,
    done: row.done,
    failed: row.failed,
    retries: row.retries,
    speculative: row.speculative,
    createdAt: row.created_at,
    startedAt: row.started_at ?? undefined,
    finishedAt: row.finished_at ?? undefined,
    error: row.error ?? undefined,
  };
}

function splitFrom(row: SplitRow): SplitRecord {
  return {
    index: row.idx,
    first: row.first,
    count: row.count,
    state: row.state,
    attempts: row.attempts,
    copies: row.copies,
    replica: row.replica ?? undefined,
    createdAt: row.created_at,
    assignedAt: row.assigned_at ?? undefined,
    startedAt: row.started_at ?? undefined,
    finishedAt: row.finished_at ?? undefined,
  };
}
