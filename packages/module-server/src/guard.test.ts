import { fileURLToPath } from 'node:url';
import { createModuleClient, decode, encode, type Op } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModuleServer, type ModuleServer } from './server.js';

const calc = fileURLToPath(new URL('../../../test/fixtures/calc/index.js', import.meta.url));
let server: ModuleServer;
let client: ReturnType<typeof createModuleClient>;

beforeAll(async () => {
  server = await createModuleServer({ moduleName: calc });
  client = createModuleClient(`127.0.0.1:${server.port}`);
});
afterAll(async () => {
  client.close();
  await server.close();
});

const send = async (ops: Op[]) =>
  decode(await client.invoke(encode({ v: 1, session: 'g', ops }), { timeoutMs: 2_000 }));

/** Each is a route to the Function constructor, eval or process; all must be refused. */
const escapes: Array<[string, Op[]]> = [
  [
    'fn.constructor("return process")()',
    [{ op: 'call', target: null, path: ['add', 'constructor'], args: ['return process'] }],
  ],
  [
    'new fn.constructor(...)',
    [{ op: 'new', target: null, path: ['add', 'constructor'], args: ['return process'] }],
  ],
  ['fn.__proto__.constructor', [{ op: 'get', target: null, path: ['add', '__proto__', 'constructor'] }]],
  [
    'obj.constructor.constructor',
    [{ op: 'get', target: null, path: ['constants', 'constructor', 'constructor'] }],
  ],
  ['Class.prototype', [{ op: 'get', target: null, path: ['Matrix', 'prototype'] }]],
  [
    'obj.__defineGetter__',
    [{ op: 'call', target: null, path: ['constants', '__defineGetter__'], args: ['x', 1] }],
  ],
  [
    'obj.__lookupGetter__',
    [{ op: 'call', target: null, path: ['counter', '__lookupGetter__'], args: ['x'] }],
  ],
  ['fn.caller', [{ op: 'get', target: null, path: ['add', 'caller'] }]],
  ['fn.arguments', [{ op: 'get', target: null, path: ['add', 'arguments'] }]],
  [
    'a function that returns Function',
    [{ op: 'call', target: null, path: ['evil', 'leakFunction'], args: [] }],
  ],
  [
    'a function that returns process',
    [{ op: 'call', target: null, path: ['evil', 'leakProcess'], args: [] }],
  ],
  [
    'a constructor reached through an async function',
    [{ op: 'get', target: null, path: ['delayed', 'constructor'] }],
  ],
  [
    'Function nested in a returned object',
    [{ op: 'call', target: null, path: ['leaks', 'nestedFunction'], args: [] }],
  ],
  [
    'globalThis nested in a returned array',
    [{ op: 'call', target: null, path: ['leaks', 'nestedGlobal'], args: [] }],
  ],
  [
    'valueOf on Object.prototype then constructor',
    [{ op: 'get', target: null, path: ['constants', 'valueOf', 'constructor'] }],
  ],
];

describe('guard', () => {
  for (const [name, ops] of escapes) {
    it(`refuses ${name} with PERMISSION_DENIED`, async () => {
      await expect(send(ops)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    });
  }

  it('still allows ordinary methods of returned objects', async () => {
    expect(
      await send([{ op: 'call', target: null, path: ['version', 'toUpperCase'], args: [] }]),
    ).toMatchObject({
      value: '1.0.0',
    });
  });
});
