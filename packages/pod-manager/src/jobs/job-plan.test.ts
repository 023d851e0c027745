import { describe, expect, it } from 'vitest';
import { equalSizes, planJob, sizeTableRow } from './job-plan.js';

const limits = { maxWorkers: 16 };
const spec = (extra: object) => ({ module: 'm', fn: 'f', ...extra });

describe('planJob', () => {
  it('gives one split per worker by default, and split_size when given', () => {
    expect(planJob(spec({ workers: 4 }), 10, limits).sizes).toEqual([3, 3, 2, 2]);
    expect(planJob(spec({ workers: 2, split_size: 4 }), 10, limits)).toMatchObject({
      workers: 2,
      sizes: [4, 4, 2],
    });
  });

  it('follows each policy', () => {
    expect(planJob(spec({ policy: 'none', split_size: 3, workers: 2 }), 7, limits).sizes).toEqual([3, 3, 1]);
    expect(planJob(spec({ policy: 'fixed_workers', workers: 3, split_size: 1 }), 7, limits).sizes).toEqual([
      3, 2, 2,
    ]);
    const clamped = planJob(
      spec({ policy: 'clamped', split_size: 1, min_split_size: 5, max_split_size: 8 }),
      12,
      limits,
    );
    expect(clamped.sizes).toEqual([5, 5, 2]);
  });

  it('finds the size table row for any job size, not only powers of two (the seed returned none)', () => {
    const table = [
      { max_inputs: 100, split_size: 10, workers: 1 },
      { max_inputs: 1000, split_size: 50, workers: 3 },
    ];
    expect(sizeTableRow(table, 1)).toEqual(table[0]);
    expect(sizeTableRow(table, 100)).toEqual(table[0]);
    expect(sizeTableRow(table, 101)).toEqual(table[1]);
    expect(sizeTableRow(table, 5000)).toEqual(table[1]);
    expect(planJob(spec({ policy: 'size_table', size_table: table }), 300, limits)).toMatchObject({
      workers: 3,
      sizes: [50, 50, 50, 50, 50, 50],
    });
  });

  it('deals static splits out as one near-equal split per worker', () => {
    expect(planJob(spec({ dynamic: false, workers: 3, split_size: 1 }), 10, limits)).toMatchObject({
      dynamic: false,
      sizes: [4, 3, 3],
    });
  });

  it('counts the speculative extra worker against the limit', () => {
    expect(planJob(spec({ workers: 4, speculation: { extra_worker: true } }), 100, limits).reserved).toBe(5);
    expect(() => planJob(spec({ workers: 16, speculation: { extra_worker: true } }), 100, limits)).toThrow(
      /speculation/,
    );
  });

  it('refuses what cannot be planned, naming the field', () => {
    expect(() => planJob(spec({ workers: 17 }), 100, limits)).toThrow(
      /^workers: 17 is more than jobs.max_workers/,
    );
    expect(() => planJob(spec({ split_sizes: [1, 2] }), 4, limits)).toThrow(/^split_sizes: they add up to 3/);
    expect(() => planJob(spec({ split_size: 2000 }), 4000, limits)).toThrow(/^split_size: .* more than 1024/);
    expect(() => planJob(spec({ policy: 'none', split_size: 1 }), 100_001, limits)).toThrow(
      /^split_size: 100001 splits/,
    );
    expect(() =>
      planJob(spec({ policy: 'clamped', min_split_size: 9, max_split_size: 2 }), 4, limits),
    ).toThrow(/^min_split_size/);
  });

  it('never plans more workers than splits', () => {
    expect(planJob(spec({ workers: 8 }), 3, limits).workers).toBe(3);
    expect(equalSizes(2, 5)).toEqual([1, 1]);
  });
});
