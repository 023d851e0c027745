/** Kubernetes quantities (`100Mi`, `1G`, `500m`), as module configs and clients state memory. */

const factors: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** The number a quantity stands for (bytes, for memory). Throws a TypeError naming a bad one. */
export function bytesFromQuantity(quantity: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$/.exec(quantity);
  const factor = match ? factors[match[2] ?? ''] : undefined;
  if (!match || factor === undefined) throw new TypeError(`not a memory quantity: ${quantity}`);
  return Number(match[1]) * factor;
}
