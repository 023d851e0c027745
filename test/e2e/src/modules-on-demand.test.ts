import { describe, expect, it } from 'vitest';
import { fixture, http, startPodManager } from './harness.js';

describe('modules on demand', () => {
  it('serves a subpath import specifier as a module of its own', async () => {
    await using pm = await startPodManager({ 'calc/extra': { package: fixture('calc') } });
    expect(await pm.client.module<any>('calc/extra').twice(21)).toBe(42);
    expect((await http(`${pm.url}/modules/calc%2Fextra`)).body).toMatchObject({
      name: 'calc/extra',
      state: 'ready',
    });
  });

  it("installs a module's dependency list beside it", async () => {
    await using pm = await startPodManager({
      'uses-greeter': { package: fixture('uses-greeter'), dependency: [fixture('greeter')] },
    });
    expect(await pm.client.module<any>('uses-greeter').welcome('ada')).toBe('hello, ada, welcome');
  });

  it('tells a response that waited for a cold start how long it waited', async () => {
    await using pm = await startPodManager();
    const first = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: { path: 'add', args: [1, 2] },
    });
    expect(first.body).toEqual({ value: 3 });
    expect(Number(first.headers.get('x-splice-cold-start-ms'))).toBeGreaterThan(0);
    const warm = await http(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      body: { path: 'add', args: [1, 2] },
    });
    expect(warm.headers.get('x-splice-cold-start-ms')).toBeNull();
  });
});
