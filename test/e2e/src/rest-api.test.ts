import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startPodManager, type TestPodManager } from './harness.js';

let pm: TestPodManager;

beforeAll(async () => {
  pm = await startPodManager();
});
afterAll(async () => {
  await pm[Symbol.asyncDispose]();
});

const invoke = (name: string, body: unknown, headers?: Record<string, string>) =>
  http(`${pm.url}/modules/${name}/invoke`, { method: 'POST', body, headers });

describe('REST API', () => {
  it('describes itself in an OpenAPI document', async () => {
    const { status, body } = await http(`${pm.url}/openapi.json`);
    expect(status).toBe(200);
    expect(body.openapi).toMatch(/^3\./);
    for (const path of [
      '/modules',
      '/modules/{name}',
      '/modules/{name}/invoke',
      '/modules/{name}/load',
      '/policy',
      '/metrics',
      '/benchmark/report',
    ]) {
      expect(Object.keys(body.paths)).toContain(path);
    }
    expect(body.paths['/modules/{name}/invoke'].post.requestBody.content).toHaveProperty('application/json');
  });

  it('answers health and readiness', async () => {
    expect(await http(`${pm.url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await http(`${pm.url}/readyz`)).toMatchObject({ status: 200, body: { status: 'ready' } });
  });

  it('lists the configured modules with their state', async () => {
    const { status, body } = await http(`${pm.url}/modules`);
    expect(status).toBe(200);
    expect(body.modules.map((m: { name: string }) => m.name)).toEqual(['calc', 'greeter']);
    expect(body.modules[0]).toMatchObject({
      load_type: 'remote',
      restarts: 0,
      calls_served: expect.any(Number),
    });
  });

  it('invokes with JSON, for curl', async () => {
    expect((await invoke('calc', { path: 'add', args: [2, 3] })).body).toEqual({ value: 5 });
    expect((await invoke('calc', { path: 'constants.pi' })).body).toEqual({ value: Math.PI });
    expect((await invoke('calc', { path: ['echo'], args: [{ a: [1, null] }] })).body).toEqual({
      value: { a: [1, null] },
    });
    expect((await invoke('greeter', { path: [], args: ['curl'] })).body).toEqual({ value: 'hello, curl' });
  });

  it('describes references in JSON answers and frees them at once', async () => {
    const { body } = await invoke('calc', { path: 'matrix', args: [[[1]]] });
    expect(body).toEqual({ value: { $ref: { kind: 'object', label: 'Matrix' } } });
    const held = async () => (await http(`${pm.url}/modules/calc`)).body.server.objects;
    for (let i = 0; i < 50 && (await held()) !== 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await held()).toBe(0);
  });

  it('answers a remote throw in JSON with 422 REMOTE_ERROR and the remote error', async () => {
    const { status, body } = await invoke('calc', { path: 'fail', args: ['nope'] });
    expect(status).toBe(422);
    expect(body.error).toMatchObject({
      code: 'REMOTE_ERROR',
      message: 'RangeError: nope',
      remote: {
        name: 'RangeError',
        message: 'nope',
        code: 'E_CALC',
        stack: expect.stringContaining('calc/index.js'),
      },
    });
  });

  it('refuses malformed requests with a coded error', async () => {
    expect(await invoke('calc', { args: [1] })).toMatchObject({
      status: 400,
      body: { error: { code: 'BAD_REQUEST' } },
    });
    expect(await invoke('calc', '{not json')).toMatchObject({
      status: 400,
      body: { error: { code: 'BAD_REQUEST' } },
    });
    expect(await invoke('calc', 'x', { 'content-type': 'text/plain' })).toMatchObject({
      status: 415,
      body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE' } },
    });
    expect(await invoke('calc', { path: 'add', args: [] }, { 'x-splice-timeout-ms': 'soon' })).toMatchObject({
      status: 400,
      body: { error: { code: 'BAD_REQUEST', message: expect.stringContaining('x-splice-timeout-ms') } },
    });
    expect(await invoke('calc', { path: 'add.constructor', args: [] })).toMatchObject({
      status: 403,
      body: { error: { code: 'PERMISSION_DENIED', status: 'PERMISSION_DENIED' } },
    });
  });

  it('refuses unknown keys in JSON bodies instead of dropping them', async () => {
    const typo = await http(`${pm.url}/policy`, { method: 'PUT', body: { name: 'default', min_gain: 5 } });
    expect(typo.status).toBe(400);
    expect(typo.body.error).toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringContaining('additional properties'),
    });
    const arg = await invoke('calc', { path: 'add', arg: [1, 2] });
    expect(arg).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
  });

  it('answers where a module runs, cheaply', async () => {
    expect((await http(`${pm.url}/modules/calc/placement`)).body).toEqual({
      name: 'calc',
      mode: 'remote',
      placement: 'remote',
      reason: 'load_type remote',
    });
  });

  it('answers unknown modules and routes with 404 and a code', async () => {
    expect(await http(`${pm.url}/modules/nope`)).toMatchObject({
      status: 404,
      body: { error: { code: 'MODULE_NOT_FOUND' } },
    });
    expect(await invoke('nope', { path: 'x' })).toMatchObject({
      status: 404,
      body: { error: { code: 'MODULE_NOT_FOUND' } },
    });
    expect(await http(`${pm.url}/modules/nope/load`, { method: 'POST' })).toMatchObject({ status: 404 });
    expect(await http(`${pm.url}/nowhere`)).toMatchObject({
      status: 404,
      body: { error: { code: 'ROUTE_NOT_FOUND' } },
    });
  });

  it('answers malformed msgpack with 400 INVALID_ARGUMENT', async () => {
    const response = await fetch(`${pm.url}/modules/calc/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: new Uint8Array([0x92, 0x01]),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
  });
});
