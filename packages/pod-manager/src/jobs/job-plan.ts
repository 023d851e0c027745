/**
 * From a job spec and its number of inputs to a plan: how many workers and which splits, as the
 * spec's policy decides within the pod-manager's limits. A spec that cannot be planned is refused
 * with JOB_SPEC_INVALID naming the field; nothing is stored for it.
 */
import { Rest } from '@splice-orc/protocol';
import { ServiceError } from '../errors.js';

/** What a plan needs of the pod-manager's job limits. */
export interface PlanLimits {
  /** Workers all jobs together may use (speculative extras included). */
  maxWorkers: number;
}

/** A job's workers and split sizes (in input order). */
export interface JobPlan {
  workers: number;
  /** Workers plus the extra speculative one, when asked: what the limits count. */
  reserved: number;
  sizes: number[];
  /** Static splits: split i is worker (i mod workers)'s. */
  dynamic: boolean;
}

/** Most splits of one job (each is a row, and a unit of scheduling). */
export const MAX_SPLITS = 100_000;

/** The size table used when `size_table` is the policy and the spec has none. */
export const DEFAULT_SIZE_TABLE: readonly Rest.SizeTableRow[] = [
  { max_inputs: 1_000, split_size: 50, workers: 1 },
  { max_inputs: 100_000, split_size: 500, workers: 2 },
  { max_inputs: Rest.MAX_JOB_INPUTS, split_size: 2_000, workers: 4 },
];

/** Refuses a spec field, naming it. */
export function badField(field: string, message: string): ServiceError {
  return new ServiceError('JOB_SPEC_INVALID', `${field}: ${message}`, {
    extra: { problems: [`/${field}: ${message}`] },
  });
}

/** Plans a job of `n` inputs (n >= 1). */
export function planJob(spec: Rest.JobSpec, n: number, limits: PlanLimits): JobPlan {
  const batch = spec.batch ?? false;
  const maxSplit = batch ? 100_000 : Rest.MAX_ITEM_SPLIT;
  const dynamic = spec.dynamic ?? true;
  if (spec.workers !== undefined && spec.workers > limits.maxWorkers) {
    throw badField('workers', `${spec.workers} is more than jobs.max_workers (${limits.maxWorkers})`);
  }
  let { workers, sizes } = policySizes(spec, n);
  if (spec.split_sizes) {
    const sum = spec.split_sizes.reduce((a, b) => a + b, 0);
    if (sum !== n) throw badField('split_sizes', `they add up to ${sum}, but there are ${n} inputs`);
    sizes = [...spec.split_sizes];
  }
  if (sizes.length > MAX_SPLITS) {
    throw badField(
      spec.split_sizes ? 'split_sizes' : 'split_size',
      `${sizes.length} splits is more than ${MAX_SPLITS}: make them larger`,
    );
  }
  const tooBig = sizes.find((s) => s > maxSplit);
  if (tooBig !== undefined) {
    throw badField(
      spec.split_sizes ? 'split_sizes' : 'split_size',
      `a split of ${tooBig} inputs is more than ${maxSplit} (the most ${batch ? 'with batch: true' : 'called one by one in one split'})`,
    );
  }
  workers = Math.max(1, Math.min(workers, sizes.length, limits.maxWorkers));
  if (!dynamic && !spec.split_sizes) sizes = equalSizes(n, workers);
  const reserved = workers + (spec.speculation?.extra_worker ? 1 : 0);
  if (reserved > limits.maxWorkers) {
    throw badField(
      'speculation',
      `extra_worker needs ${reserved} workers, more than jobs.max_workers (${limits.maxWorkers})`,
    );
  }
  return { workers, reserved, sizes, dynamic };
}

/** Split sizes and workers as the policy decides them. */
function policySizes(spec: Rest.JobSpec, n: number): { workers: number; sizes: number[] } {
  const policy = spec.policy ?? 'default';
  const workers = spec.workers ?? 1;
  switch (policy) {
    case 'none': {
      return { workers, sizes: cut(n, spec.split_size ?? 1) };
    }
    case 'fixed_workers':
      return { workers, sizes: equalSizes(n, workers) };
    case 'clamped': {
      const low = spec.min_split_size ?? 1;
      const high = spec.max_split_size ?? 100_000;
      if (low > high) throw badField('min_split_size', `${low} is more than max_split_size (${high})`);
      const size = Math.min(high, Math.max(low, spec.split_size ?? Math.ceil(n / workers)));
      return { workers, sizes: cut(n, size) };
    }
    case 'size_table': {
      const row = sizeTableRow(spec.size_table ?? DEFAULT_SIZE_TABLE, n);
      return { workers: spec.workers ?? row.workers, sizes: cut(n, spec.split_size ?? row.split_size) };
    }
    default:
      // One split per worker unless a split size is given.
      return { workers, sizes: spec.split_size ? cut(n, spec.split_size) : equalSizes(n, workers) };
  }
}

/**
 * The row for a job of `n` inputs: the first (by max_inputs) it fits in, else the largest. The
 * seed looked `n` up as a key, so any size but a power of two found nothing.
 */
export function sizeTableRow(table: readonly Rest.SizeTableRow[], n: number): Rest.SizeTableRow {
  const rows = [...table].sort((a, b) => a.max_inputs - b.max_inputs);
  return rows.find((r) => n <= r.max_inputs) ?? (rows.at(-1) as Rest.SizeTableRow);
}

/** `n` inputs in splits of `size` (the last one shorter). */
function cut(n: number, size: number): number[] {
  const sizes: number[] = [];
  for (let left = n; left > 0; left -= size) sizes.push(Math.min(size, left));
  return sizes;
}

/** `n` inputs in `parts` near-equal splits (sizes differ by at most one). */
export function equalSizes(n: number, parts: number): number[] {
  const k = Math.max(1, Math.min(parts, n));
  const base = Math.floor(n / k);
  return Array.from({ length: k }, (_, i) => base + (i < n % k ? 1 : 0));
}
