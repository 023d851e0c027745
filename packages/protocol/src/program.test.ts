// The checks of the iteration and stream operations (INVOKE.md 3.4-3.6): what a server refuses
// before running anything.
import { describe, expect, it } from 'vitest';
import { RemoteRef, Slot } from './codec.js';
import { parseRequest } from './program.js';

const ref = new RemoteRef('srv', 1, 'object', 'Pipe');
const program = (...ops: unknown[]) => ({ v: 1, session: 's', ops });
const refused = (...ops: unknown[]) => {
  try {
    parseRequest(program(...ops));
  } catch (error) {
    return (error as { code: string; message: string }).message;
  }
  return 'accepted';
};

describe('pull, close, pipe and push operations', () => {
  it('accepts them well formed', () => {
    expect(
      refused(
        { op: 'call', target: null, path: ['count'], args: [3] },
        { op: 'pull', target: new Slot(0), max: 1024 },
        { op: 'close', target: ref },
        { op: 'pipe' },
        { op: 'push', target: ref, items: [1, 'two'], end: true },
        { op: 'push', target: ref, items: [], end: false, error: 'disk went away' },
      ),
    ).toBe('accepted');
  });

  it('refuses a pull without a window of 1 to 1024 items', () => {
    expect(refused({ op: 'pull', target: ref, max: 0 })).toContain(
      'ops[0].max must be an integer from 1 to 1024',
    );
    expect(refused({ op: 'pull', target: ref, max: 1025 })).toContain('max');
    expect(refused({ op: 'pull', target: ref })).toContain('max');
  });

  it('refuses a push whose items, end or error are malformed, and targets that are not earlier', () => {
    expect(refused({ op: 'push', target: ref, items: 'x', end: true })).toContain(
      'ops[0].items must be an array',
    );
    expect(refused({ op: 'push', target: ref, items: new Array(1025).fill(0), end: true })).toContain(
      '1024 chunks',
    );
    expect(refused({ op: 'push', target: ref, items: [], end: 'yes' })).toContain(
      'ops[0].end must be a boolean',
    );
    expect(refused({ op: 'push', target: ref, items: [], end: false, error: 'x'.repeat(1001) })).toContain(
      'error',
    );
    expect(refused({ op: 'close', target: new Slot(0) })).toContain('target');
    expect(refused({ op: 'explode' })).toContain(
      'must be get, call, new, release, pull, close, pipe or push',
    );
  });
});
