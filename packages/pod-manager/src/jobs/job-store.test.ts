import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import { openSqliteJobStore } from './job-store.js';

const newJob = (id: string, sizes: number[]) => {
  let first = 0;
  return {
    id,
    spec: { module: 'm', fn: 'f' },
    total: sizes.reduce((a, b) => a + b, 0),
    workers: 2,
    reserved: 2,
    splits: sizes.map((count) => {
      const split = { first, count, inputs: encode(Array.from({ length: count }, (_, i) => first + i)) };
      first += count;
      return split;
    }),
  };
};
const values = (...xs: unknown[]) => xs.map((x) => ({ value: encode(x), failed: false }));

describe('the SQLite job store', () => {
  it('stores a split once: a second answer (a speculative copy) changes nothing', () => {
    const store = openSqliteJobStore(':memory:');
    store.create(newJob('a', [2, 2]));
    expect(decode(store.splitInputs('a', 1))).toEqual([2, 3]);
    expect(store.finishSplit('a', 1, values(20, 30))).toBe(true);
    expect(store.finishSplit('a', 1, values(-1, -1))).toBe(false);
    expect(store.get('a')).toMatchObject({ done: 2, splitsDone: 1 });
    expect(store.results('a', 'completion', 0, 10).map((r) => [r.index, decode(r.value)])).toEqual([
      [2, 20],
      [3, 30],
    ]);
  });

  it('pages results in input order only as far as they are unbroken, and in completion order', () => {
    const store = openSqliteJobStore(':memory:');
    store.create(newJob('b', [1, 1, 1]));
    store.finishSplit('b', 2, values('c'));
    expect(store.results('b', 'input', 0, 10)).toEqual([]);
    store.finishSplit('b', 0, values('a'));
    expect(store.results('b', 'input', 0, 10).map((r) => r.index)).toEqual([0]);
    store.finishSplit('b', 1, values('b'));
    expect(store.results('b', 'input', 1, 10).map((r) => r.index)).toEqual([1, 2]);
    expect(store.results('b', 'completion', 0, 2).map((r) => r.index)).toEqual([2, 0]);
    expect(store.results('b', 'completion', 2, 2).map((r) => r.index)).toEqual([1]);
  });

  it('keeps finished splits and makes running ones pending again when reopened after a kill', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'splice-store-')), 'jobs.sqlite');
    const store = openSqliteJobStore(path);
    store.create(newJob('c', [1, 1]));
    store.setState('c', 'running');
    store.splitStarted('c', 0, 'r1', false);
    store.splitStarted('c', 1, 'r2', false);
    store.finishSplit('c', 0, values('done'));
    // No close(): the process dies with the database open. Its files as it leaves them are the
    // database and its WAL as they are now (the e2e SIGKILL test kills a real pod-manager).
    const copy = join(mkdtempSync(join(tmpdir(), 'splice-store-')), 'jobs.sqlite');
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
    const reopened = openSqliteJobStore(copy);
    const [job] = reopened.unfinished();
    expect(job).toMatchObject({ id: 'c', state: 'running', splitsDone: 1 });
    reopened.requeueRunning('c');
    expect(reopened.splits('c').map((s) => s.state)).toEqual(['done', 'pending']);
    store.close();
    reopened.close();
  });

  it('counts retries and copies, lists by state, and deletes the oldest finished jobs past the limit', () => {
    const store = openSqliteJobStore(':memory:');
    for (const id of ['j1', 'j2', 'j3']) store.create(newJob(id, [1]));
    store.splitStarted('j3', 0, 'r1', false);
    store.splitRetried('j3', 0);
    store.splitStarted('j3', 0, 'r2', false);
    store.splitStarted('j3', 0, 'r1', true);
    expect(store.get('j3')).toMatchObject({ retries: 1, speculative: 1 });
    expect(store.splits('j3')[0]).toMatchObject({ attempts: 3, copies: 1, replica: 'r1' });
    store.setState('j1', 'succeeded');
    store.setState('j2', 'cancelled');
    expect(store.counts()).toEqual({ succeeded: 1, cancelled: 1, queued: 1 });
    store.prune(1);
    expect(store.list(10).map((j) => j.id)).toEqual(['j3', 'j2']);
  });

  it('filters by state before the limit', () => {
    const store = openSqliteJobStore(':memory:');
    for (const id of ['j1', 'j2', 'j3', 'j4']) store.create(newJob(id, [1]));
    store.setState('j1', 'succeeded');
    store.setState('j2', 'succeeded');
    // The two newest jobs are queued: a limit of 1 still finds the newest succeeded one.
    expect(store.list(1, 'succeeded').map((j) => j.id)).toEqual(['j2']);
    expect(store.list(10, 'succeeded').map((j) => j.id)).toEqual(['j2', 'j1']);
    expect(store.list(10, 'failed')).toEqual([]);
    expect(store.list(2).map((j) => j.id)).toEqual(['j4', 'j3']);
  });

  it('belongs to one process: a second open of the file is refused, and works once the first is closed', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'splice-jobs-')), 'jobs.sqlite');
    const first = openSqliteJobStore(path);
    first.create(newJob('j1', [1]));
    expect(() => openSqliteJobStore(path)).toThrow(/jobs database .* is in use by another pod-manager/);
    first.close();
    const again = openSqliteJobStore(path);
    expect(again.get('j1')?.id).toBe('j1');
    again.close();
  });
});
