import { describe, expect, it } from 'vitest';
import { exportNames } from './module-host.js';

describe('exportNames', () => {
  it('lists the identifiers a caller can reach, sorted, without what the guard refuses or then', () => {
    const root = {
      zeta: 1,
      add: () => 0,
      default: { x: 1 },
      // biome-ignore lint/suspicious/noThenProperty: a module exporting then is what is tested
      then: () => undefined,
      'not-an-identifier': 2,
      constructorLike: class {},
      compile: Function,
      // biome-ignore lint/security/noGlobalEval: the guard must refuse eval, so it is exported here
      run: eval,
      proc: process,
      __proto__x: 3,
    };
    expect(exportNames(root)).toEqual(['__proto__x', 'add', 'constructorLike', 'default', 'zeta']);
  });

  it('leaves out a getter that throws', () => {
    const root = Object.defineProperty({ ok: 1 }, 'boom', {
      enumerable: true,
      get() {
        throw new Error('no');
      },
    });
    expect(exportNames(root)).toEqual(['ok']);
  });

  it("lists a function root's own properties (a CommonJS module.exports)", () => {
    const greet = Object.assign((name: string) => name, { shout: () => '', Greeter: class {} });
    expect(exportNames(greet)).toEqual(['Greeter', 'shout']);
  });
});
