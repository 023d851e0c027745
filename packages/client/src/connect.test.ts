import { describe, expect, it } from 'vitest';
import { connect } from './connect.js';

describe('connect', () => {
  it('call() returns a rejected promise for a chain that cannot be compiled, never throws', async () => {
    const orc = connect('http://127.0.0.1:9', { reportIntervalMs: 0 });
    const a = orc.module<any>('a');
    const b = orc.module<any>('b');
    let pending: Promise<unknown> | undefined;
    expect(() => {
      pending = orc.call(a.f(b.g()), {});
    }).not.toThrow();
    await expect(pending).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/lives in module b and cannot be passed to module a/),
    });
    await expect(orc.call(a as never, {})).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await orc.close();
  });
});
