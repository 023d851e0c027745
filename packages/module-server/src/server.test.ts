import { fileURLToPath } from 'node:url';
import {
  CallbackRef,
  createInvokeChannel,
  createModuleClient,
  decode,
  encode,
  type InvokeResponse,
  kw,
  type ModuleClient,
  NDArray,
  type Op,
  RemoteRef,
  Slot,
  type Target,
} from '@splice-orc/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModuleServer, type ModuleServer } from './server.js';

const secret = 'module-server-test-secret';

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/${name}/index.js`, import.meta.url));

let server: ModuleServer;
let client: ModuleClient;

async function run(ops: Op[], session = 's1', timeoutMs = 5_000): Promise<InvokeResponse> {
  const bytes = await client.invoke(encode({ v: 1, session, ops }), { timeoutMs });
  return decode(bytes) as InvokeResponse;
}

async function value(ops: Op[], session?: string): Promise<unknown> {
  const res = await run(ops, session);
  if (!res.ok) throw res.error;
  return res.value;
}

const call = (path: string[], args: unknown[] = [], target: Target = null): Op => ({
  op: 'call',
  target,
  path,
  args,
});

beforeAll(async () => {
  server = await createModuleServer({ moduleName: fixture('calc'), secret, maxMessageBytes: 64 * 1024 });
  client = createModuleClient(`127.0.0.1:${server.port}`, { maxMessageBytes: 1024 * 1024, secret });
});

afterAll(async () => {
  client.close();
  await server.close();
});

describe('module-server', () => {
  it('reports SERVING once it listens', async () => {
    expect(await client.health({ timeoutMs: 2_000 })).toBe('SERVING');
  });

  it('reads exported values and nested properties', async () => {
    expect(await value([{ op: 'get', target: null, path: ['version'] }])).toBe('1.0.0');
    expect(await value([{ op: 'get', target: null, path: ['constants', 'pi'] }])).toBe(Math.PI);
  });

  it('calls exported functions with plain arguments', async () => {
    expect(await value([call(['add'], [2, 3])])).toBe(5);
    expect(await value([call(['echo'], [new Map([[1, new Float64Array([1.5, 300.25])]])])])).toStrictEqual(
      new Map([[1, new Float64Array([1.5, 300.25])]]),
    );
    expect(await value([call(['delayed'], ['later', 5])])).toBe('later');
  });

  it('returns class instances and functions as remote references usable later', async () => {
    const m = await value([
      call(
        ['matrix'],
        [
          [
            [1, 2],
            [3, 4],
          ],
        ],
      ),
    ]);
    expect(m).toBeInstanceOf(RemoteRef);
    const ref = m as RemoteRef;
    expect(ref).toMatchObject({ server: server.serverId, kind: 'object', label: 'Matrix' });
    expect(await value([call(['size'], [], ref)])).toEqual([2, 2]);
    expect(await value([call(['det'], [ref])])).toBe(-2);
    const adder = (await value([call(['makeAdder'], [10])])) as RemoteRef;
    expect(adder.kind).toBe('function');
    expect(await value([call([], [5], adder)])).toBe(15);
    expect(await value([call(['apply'], [adder, 1])])).toBe(11);
  });

  it('runs dependent operations in one program through slots', async () => {
    const ops: Op[] = [
      call(
        ['matrix'],
        [
          [
            [2, 0],
            [0, 3],
          ],
        ],
      ),
      call(['scale'], [2], new Slot(0)),
      call(['det'], [new Slot(1)]),
    ];
    expect(await value(ops)).toBe(24);
  });

  it('answers the last get, call or new, not a release appended after it', async () => {
    const dropped = (await value([call(['matrix'], [[[9]]])])) as RemoteRef;
    const ops: Op[] = [
      call(
        ['matrix'],
        [
          [
            [1, 0],
            [0, 1],
          ],
        ],
      ),
      call(['scale'], [3], new Slot(0)),
      call(['size'], [], new Slot(1)),
      { op: 'release', ids: [dropped.id] },
    ];
    expect(await value(ops)).toEqual([2, 2]);
    await expect(run([call(['size'], [], dropped)])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('constructs classes with new', async () => {
    const ref = (await value([{ op: 'new', target: null, path: ['Matrix'], args: [[[5]]] }])) as RemoteRef;
    expect(await value([call(['get'], [0, 0], ref)])).toBe(5);
  });

  it('answers a thrown error as a value with name, message, code, cause and stack', async () => {
    const res = await run([call(['fail'], ['bad input'])]);
    expect(res.ok).toBe(false);
    const error = (res as unknown as { error: Error & { code: string } }).error;
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toBe('bad input');
    expect(error.code).toBe('E_CALC');
    expect((error.cause as Error).message).toBe('root cause');
    expect(error.stack).toContain('fixtures/calc/index.js');
  });

  it('answers rejections and non-error throws as errors', async () => {
    const rejected = await run([call(['failLater'], ['async boom'])]);
    expect(rejected).toMatchObject({ ok: false, error: { message: 'async boom' } });
    const thrown = await run([call(['throwString'])]);
    expect(thrown).toMatchObject({ ok: false, error: { name: 'NonErrorThrown', message: 'plain string' } });
  });

  it('refuses a reference after release with NOT_FOUND', async () => {
    const ref = (await value([call(['matrix'], [[[1]]])])) as RemoteRef;
    await value([{ op: 'release', ids: [ref.id] }]);
    await expect(run([call(['size'], [], ref)])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses a reference of another session or another server instance with NOT_FOUND', async () => {
    const ref = (await value([call(['matrix'], [[[1]]])], 'owner')) as RemoteRef;
    await expect(run([call(['size'], [], ref)], 'thief')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const stale = new RemoteRef('old-server', ref.id, 'object', 'Matrix');
    await expect(run([call(['size'], [], stale)], 'owner')).rejects.toThrow(
      /belongs to module-server old-server/,
    );
  });

  it('refuses malformed payloads with INVALID_ARGUMENT', async () => {
    await expect(client.invoke(new Uint8Array([0x92, 1]), { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      client.invoke(encode({ v: 1, session: 's', ops: [{ op: 'eval' }] }), { timeoutMs: 2_000 }),
    ).rejects.toThrow(/ops\[0\]\.op/);
  });

  it('refuses a payload over the size limit with RESOURCE_EXHAUSTED and keeps serving', async () => {
    await expect(run([call(['echo'], [new Uint8Array(100 * 1024)])])).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
    });
    expect(await value([call(['add'], [1, 1])])).toBe(2);
  });

  it('ends a hung call at its deadline and keeps serving', async () => {
    await expect(run([call(['hang'])], 's1', 200)).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(await value([call(['add'], [1, 2])])).toBe(3);
  });
});

describe('module-server with a CommonJS module', () => {
  it('serves module.exports as the root, callable and with its properties', async () => {
    await using cjs = await createModuleServer({ moduleName: fixture('greeter'), secret });
    const c = createModuleClient(`127.0.0.1:${cjs.port}`, { secret });
    const send = async (ops: Op[]) =>
      decode(await c.invoke(encode({ v: 1, session: 's', ops }), { timeoutMs: 2_000 }));
    expect(await send([call([], ['ada'])])).toMatchObject({ ok: true, value: 'hello, ada' });
    expect(await send([call(['shout'], ['ada'])])).toMatchObject({ value: 'HELLO, ADA' });
    const ops: Op[] = [
      { op: 'new', target: null, path: ['Greeter'], args: ['hi'] },
      call(['greet'], ['bo'], new Slot(0)),
    ];
    expect(await send(ops)).toMatchObject({ value: 'hi, bo' });
    expect((await c.stats({ timeoutMs: 2_000 })).exports).toEqual(['Greeter', 'shout']);
    c.close();
  });

  it("lists the module's exports in Stats, sorted, for import { name } at link time", async () => {
    const { exports } = await client.stats({ timeoutMs: 2_000 });
    expect(exports).toContain('add');
    expect(exports).toContain('Matrix');
    expect(exports).toEqual([...exports].sort());
  });
});

describe('module-server credential', () => {
  it('refuses Invoke and Stats without the secret or with a wrong one, and keeps health open', async () => {
    const add = encode({ v: 1, session: 'x', ops: [call(['add'], [1, 2])] });
    for (const other of [undefined, 'module-server-test-secreT', 'short']) {
      const c = createModuleClient(`127.0.0.1:${server.port}`, { secret: other });
      await expect(c.invoke(add, { timeoutMs: 2_000 })).rejects.toMatchObject({
        code: 'UNAUTHENTICATED',
        message: expect.stringMatching(/only the pod-manager that started this module-server/),
      });
      await expect(c.stats({ timeoutMs: 2_000 })).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(await c.health({ timeoutMs: 2_000 })).toBe('SERVING');
      c.close();
    }
    const channel = createInvokeChannel(`127.0.0.1:${server.port}`);
    await expect(channel.invoke(add, { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    channel.close();
    expect(decode(await client.invoke(add, { timeoutMs: 2_000 }))).toMatchObject({ ok: true, value: 3 });
  });

  it('will not start without a secret of 16 characters or more', async () => {
    await expect(createModuleServer({ moduleName: fixture('calc'), secret: 'too-short' })).rejects.toThrow(
      /at least 16 characters/,
    );
  });
});

describe('module-server and values for Python modules', () => {
  it('refuses keyword arguments: a Node module takes positional arguments only', async () => {
    await expect(run([call(['add'], [1, kw({ b: 2 })])])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/keyword arguments \(kw\(\)\) are for Python modules/),
    });
  });

  it('passes an NDArray to module code as the value it is, and sends one back', async () => {
    const a = NDArray.from(
      [
        [1, 2],
        [3, 4],
      ],
      'float64',
    );
    expect(await value([call(['echo'], [a])])).toStrictEqual(a);
  });
});

describe('callback endpoint', () => {
  const exchangeOp = (op: Record<string, unknown>) =>
    encode({ v: 1, session: 'cb', ops: [{ op: 'callbacks', answers: [], released: [], wait: 0, ...op }] });

  it('serves the callbacks exchange on its own port, with the credential', async () => {
    const relay = createModuleClient(`127.0.0.1:${server.callbackPort}`, { secret });
    const stranger = createModuleClient(`127.0.0.1:${server.callbackPort}`, {
      secret: 'not-the-secret-at-all',
    });
    try {
      const answer = decode(await relay.invoke(exchangeOp({}), { timeoutMs: 2_000 })) as InvokeResponse;
      expect(answer).toMatchObject({ ok: true, value: { server: server.serverId, requests: [] } });
      await expect(stranger.invoke(exchangeOp({}), { timeoutMs: 2_000 })).rejects.toMatchObject({
        code: 'UNAUTHENTICATED',
      });
      // only the callbacks operation: no module call reaches the module through this port
      await expect(
        relay.invoke(encode({ v: 1, session: 'cb', ops: [call(['add'], [1, 2])] }), { timeoutMs: 2_000 }),
      ).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/takes only the callbacks operation/),
      });
      await expect(relay.invoke(exchangeOp({ wait: 60_000 }), { timeoutMs: 2_000 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/wait must be an integer from 0 to 25000 ms/),
      });
    } finally {
      relay.close();
      stranger.close();
    }
  });

  it('fails a callback no app answers within the callback timeout, and serves the next call', async () => {
    await using quick = await createModuleServer({
      moduleName: fixture('calc'),
      secret,
      callbackTimeoutMs: 300,
    });
    const c = createModuleClient(`127.0.0.1:${quick.port}`, { secret });
    try {
      const program = {
        v: 1,
        session: 'late',
        ops: [call(['tryCall'], [new CallbackRef('nobody', 'lonely')])],
      };
      const res = decode(await c.invoke(encode(program), { timeoutMs: 5_000 })) as InvokeResponse;
      expect(res).toMatchObject({ ok: true, value: { ok: false } });
      expect((res as { value: { message: string } }).value.message).toMatch(
        /^callback lonely was not answered by the app within 3\d\d ms$/,
      );
      const add = { v: 1, session: 'late', ops: [call(['add'], [2, 3])] };
      expect((decode(await c.invoke(encode(add), { timeoutMs: 5_000 })) as { value: number }).value).toBe(5);
    } finally {
      c.close();
    }
  });

  it('fails a collected request whose app is never heard from again', async () => {
    await using quiet = await createModuleServer({
      moduleName: fixture('calc'),
      secret,
      callbackAbsentMs: 1_000,
    });
    const c = createModuleClient(`127.0.0.1:${quiet.port}`, { secret });
    const relay = createModuleClient(`127.0.0.1:${quiet.callbackPort}`, { secret });
    try {
      // The app waits for requests (its exchange is there first), collects the one the call makes,
      // then dies before it answers: no exchange of it comes again.
      const exchange = (wait: number) => encode({ v: 1, session: 'gone', ops: [{ op: 'callbacks', wait }] });
      await relay.invoke(exchange(0), { timeoutMs: 5_000 }); // the connection is up
      const collecting = relay.invoke(exchange(4_000), { timeoutMs: 5_000 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const program = { v: 1, session: 'gone', ops: [call(['tryCall'], [new CallbackRef('f', 'f')])] };
      const result = c.invoke(encode(program), { timeoutMs: 5_000 });
      const collected = decode(await collecting) as { value: { requests: unknown[] } };
      expect(collected.value.requests).toHaveLength(1);
      const res = decode(await result) as { value: { ok: boolean; message: string } };
      expect(res.value.ok).toBe(false);
      expect(res.value.message).toMatch(/the app has not been heard from for 1000 ms/);
    } finally {
      c.close();
      relay.close();
    }
  });
});
