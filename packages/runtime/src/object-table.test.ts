import { describe, expect, it } from 'vitest';
import { ObjectTable } from './object-table.js';

describe('ObjectTable', () => {
  it('returns the stored object for its id until it is released', () => {
    const table = new ObjectTable();
    const obj = { a: 1 };
    const id = table.add('s', obj);
    expect(table.get('s', id)).toBe(obj);
    table.release('s', [id]);
    expect(() => table.get('s', id)).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('keeps sessions apart', () => {
    const table = new ObjectTable();
    const id = table.add('a', {});
    expect(() => table.get('b', id)).toThrow(/released or its lease expired/);
  });

  it('frees a session when its lease expires and keeps one that was renewed', () => {
    let now = 0;
    const table = new ObjectTable({ leaseMs: 1_000, now: () => now });
    table.add('idle', {});
    table.add('idle', {});
    table.add('busy', {});
    now = 900;
    table.touch('busy');
    now = 1_000;
    expect(table.sweep()).toBe(2);
    expect(table.stats()).toEqual({ sessions: 1, objects: 1 });
  });

  it('ignores releasing ids that are already gone', () => {
    const table = new ObjectTable();
    expect(() => table.release('nobody', [1, 2])).not.toThrow();
  });

  it('refuses more objects than the per-session limit with RESOURCE_EXHAUSTED', () => {
    const table = new ObjectTable({ maxObjectsPerSession: 2 });
    table.add('s', {});
    table.add('s', {});
    expect(() => table.add('s', {})).toThrow(expect.objectContaining({ code: 'RESOURCE_EXHAUSTED' }));
  });
});

describe('ObjectTable limits', () => {
  it('refuses more objects over all sessions than the per-server limit, naming it', () => {
    const table = new ObjectTable({ maxObjects: 3 });
    table.add('a', {});
    table.add('b', {});
    table.add('c', {});
    expect(() => table.add('d', {})).toThrow(
      expect.objectContaining({
        code: 'RESOURCE_EXHAUSTED',
        message: expect.stringMatching(/over all sessions/),
      }),
    );
    table.release('a', [1]);
    expect(() => table.add('d', {})).not.toThrow();
    expect(table.stats()).toEqual({ sessions: 4, objects: 3 });
  });

  it('counts objects freed by an expired lease', () => {
    let now = 0;
    const table = new ObjectTable({ leaseMs: 100, maxObjects: 2, now: () => now });
    table.add('a', {});
    table.add('a', {});
    now = 200;
    table.sweep();
    expect(() => table.add('b', {})).not.toThrow();
  });

  it('makes room for a new session by dropping the least recently used empty one', () => {
    const table = new ObjectTable({ maxSessions: 2 });
    table.touch('empty');
    table.add('holder', {});
    table.touch('new');
    expect(table.stats()).toEqual({ sessions: 2, objects: 1 });
    expect(() => table.get('holder', 1)).not.toThrow();
  });

  it('refuses a new session when every live session holds objects', () => {
    const table = new ObjectTable({ maxSessions: 2 });
    table.add('a', {});
    table.add('b', {});
    expect(() => table.touch('c')).toThrow(
      expect.objectContaining({
        code: 'RESOURCE_EXHAUSTED',
        message: expect.stringMatching(/2 client sessions/),
      }),
    );
    table.touch('a');
    expect(table.stats().sessions).toBe(2);
  });
});
