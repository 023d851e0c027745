// What the benchmarks measure a call with, written once: latencies of calls one at a time, and
// calls/s (with latencies) of several callers each calling again as soon as its call returns.

/** The value at percentile `p` of sorted numbers. */
export const percentile = (sorted, p) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** p50 and p99, ms, of `count` calls one at a time, after `warmUp` calls not counted. */
export async function sequential(call, count, warmUp = 200) {
  for (let i = 0; i < Math.min(warmUp, count); i++) await call();
  const times = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((x, y) => x - y);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/**
 * Calls/s and p50/p99 (ms) of `inFlight` callers for `ms`, each calling again when its call
 * returns; with `warmUp`, a first round as long is run and not counted.
 */
export async function concurrent(call, inFlight, ms, { warmUp = false } = {}) {
  const round = async () => {
    const times = [];
    const end = Date.now() + ms;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (Date.now() < end) {
          const s = process.hrtime.bigint();
          await call();
          times.push(Number(process.hrtime.bigint() - s) / 1e6);
        }
      }),
    );
    const rps = times.length / ((Date.now() - t0) / 1000);
    times.sort((x, y) => x - y);
    return { rps, p50: percentile(times, 50), p99: percentile(times, 99) };
  };
  if (warmUp) await round();
  return round();
}
