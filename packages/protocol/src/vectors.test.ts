/**
 * The golden vectors of `proto/vectors/`, checked both ways: decoding the bytes gives the value the
 * vector describes, and encoding that value gives the bytes when the vector is canonical. Vectors
 * with an error must be refused with that code (by the decoder, or for a request by the server's
 * check of the program).
 */
import { readFileSync } from 'node:fs';
import { expect, describe as group, it } from 'vitest';
import { decode, encode } from './codec.js';
import { parseRequest } from './program.js';
import { type Tagged, valueFromTagged } from './tagged-json.test-support.js';

interface Vector {
  name: string;
  hex: string;
  kind?: 'request' | 'response';
  canonical?: boolean;
  value?: Tagged;
  error?: string;
}

function load(file: string): Vector[] {
  const url = new URL(`../../../proto/vectors/${file}`, import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { vectors: Vector[] }).vectors;
}

const bytesOf = (v: Vector) => Buffer.from(v.hex, 'hex');
const hexOf = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * vitest compares errors by name, message and cause only: the vectors pin every field. A stack is
 * compared when the vector gives one; without, a JavaScript decoder's Error has a stack of its own.
 */
expect.addEqualityTesters([
  function sameError(a: unknown, b: unknown, testers) {
    if (!(a instanceof Error) || !(b instanceof Error)) return undefined;
    const fields = (e: Error) =>
      Object.fromEntries(Object.entries(e).filter(([k]) => k !== 'cause' && k !== 'errors'));
    return (
      Object.getPrototypeOf(a) === Object.getPrototypeOf(b) &&
      a.name === b.name &&
      a.message === b.message &&
      (a.stack === b.stack || a.stack === undefined || b.stack === undefined) &&
      this.equals(a.cause, b.cause, testers) &&
      this.equals((a as AggregateError).errors, (b as AggregateError).errors, testers) &&
      this.equals(fields(a), fields(b), testers)
    );
  },
]);

function checkBothWays(vector: Vector): void {
  if (vector.error !== undefined) return;
  it(`decodes ${vector.name}`, () => {
    const decoded = decode(bytesOf(vector));
    if (vector.kind === 'request') parseRequest(decoded);
    expect(decoded).toStrictEqual(valueFromTagged(vector.value!));
  });
  if (vector.canonical) {
    it(`encodes ${vector.name}`, () => {
      expect(hexOf(encode(valueFromTagged(vector.value!)))).toBe(vector.hex);
    });
  }
}

group('values.json', () => {
  for (const vector of load('values.json')) {
    checkBothWays(vector);
    if (vector.error !== undefined) {
      it(`refuses ${vector.name}`, () => {
        expect(() => decode(bytesOf(vector))).toThrow(expect.objectContaining({ code: vector.error }));
      });
    }
  }
});

group('programs.json', () => {
  for (const vector of load('programs.json')) {
    checkBothWays(vector);
    if (vector.error !== undefined) {
      it(`refuses ${vector.name}`, () => {
        const decoded = decode(bytesOf(vector));
        expect(decoded).toStrictEqual(valueFromTagged(vector.value!));
        expect(() => parseRequest(decoded)).toThrow(expect.objectContaining({ code: vector.error }));
      });
    }
  }
});
