import { fileURLToPath } from 'node:url';
import { createModuleClient, decode, encode, type Op, type RemoteRef, Slot } from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModuleServer, type ModuleServer } from './server.js';

const secret = 'module-server-test-secret';

const calc = fileURLToPath(new URL('../../../test/fixtures/calc/index.js', import.meta.url));
let server: ModuleServer;
let client: ReturnType<typeof createModuleClient>;

beforeAll(async () => {
  server = await createModuleServer({ moduleName: calc, secret });
  client = createModuleClient(`127.0.0.1:${server.port}`, { secret });
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

/** A reference to a function the module made (makeAdder), for the escapes that need one. */
async function functionRef(): Promise<RemoteRef> {
  const answer = (await send([{ op: 'call', target: null, path: ['makeAdder'], args: [1] }])) as {
    value: RemoteRef;
  };
  return answer.value;
}

describe('guard against module helpers that read properties by name', () => {
  it('refuses what such a helper compiles from the Function constructor', async () => {
    const f = await functionRef();
    const compile: Op[] = [
      { op: 'call', target: null, path: ['invokeByName'], args: [f, 'constructor', 'return process.pid'] },
    ];
    await expect(send(compile)).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      message: expect.stringMatching(/compiled at run time/),
    });
  });

  it('refuses the Function constructor inside a returned array, also when kept in a slot', async () => {
    const f = await functionRef();
    const viaSlot: Op[] = [
      { op: 'call', target: null, path: ['at'], args: [f, ['constructor']] },
      { op: 'call', target: null, path: ['apply'], args: [new Slot(0), 1] },
    ];
    await expect(send(viaSlot)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
  });

  it('refuses Function.prototype.call, apply and bind by identity', async () => {
    for (const key of ['call', 'apply', 'bind']) {
      await expect(send([{ op: 'get', target: null, path: ['add', key] }])).rejects.toMatchObject({
        code: 'PERMISSION_DENIED',
      });
    }
  });

  it('refuses a slot that is not the index of an earlier operation', async () => {
    const bad = Buffer.from([0xd4, 0x05, 0x00, 0xa4, ...Buffer.from('push')]);
    const program = Buffer.from(
      encode({
        v: 1,
        session: 'g',
        ops: [{ op: 'call', target: null, path: ['echo'], args: [new Slot(0)] }],
      }),
    );
    // Replace the slot's index (the packed 0 after d4 05 00) by the string 'push'.
    const at = program.indexOf(Buffer.from([0xd4, 0x05, 0x00, 0x00]));
    const patched = Buffer.concat([program.subarray(0, at), bad, program.subarray(at + 4)]);
    await expect(client.invoke(patched, { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(([] as unknown[])[0]).toBeUndefined();
  });

  it('does not adopt a plain object with a then key as a promise', async () => {
    const f = await functionRef();
    // biome-ignore lint/suspicious/noThenProperty: the thenable under test
    const answer = (await send([{ op: 'call', target: null, path: ['echo'], args: [{ then: f }] }])) as {
      ok: boolean;
    };
    expect(answer.ok).toBe(true);
  });
});

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

describe('guard against functions compiled at run time, whatever their name', () => {
  const hostile = fileURLToPath(new URL('../../../test/fixtures/hostile/index.js', import.meta.url));

  it('refuses a compiled function that was given an innocent name', async () => {
    await using other = await createModuleServer({ moduleName: hostile, secret });
    const c = createModuleClient(`127.0.0.1:${other.port}`, { secret });
    const ops: Op[] = [
      { op: 'call', target: null, path: ['compileNamed'], args: ['return process.pid', 'add'] },
    ];
    await expect(c.invoke(encode({ v: 1, session: 'n', ops }), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      message: expect.stringMatching(/compiled at run time/),
    });
    c.close();
  });
});
