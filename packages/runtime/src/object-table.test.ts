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
