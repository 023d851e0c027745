import { inspect } from 'node:util';
import { type Op, RemoteRef, Slot } from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import { compile } from './program-compiler.js';
import { createRemoteProxy, nodeOf, type ProxyHost, type ProxyNode } from './remote-proxy.js';

/** Records what would be sent instead of sending it: these tests are about the proxy alone. */
function recorder() {
  const sent: ProxyNode[] = [];
  const host: ProxyHost = {
    run: async (node) => {
      sent.push(node);
      return 'result';
    },
    release: async () => {},
    iterate: () => {
      throw new Error('not used here');
    },
  };
  return { sent, host };
}

const ref = new RemoteRef('srv', 7, 'object', 'Matrix');

describe('remote proxy', () => {
  it('is not thenable at a module root or a reference, so returning it from async code sends nothing', async () => {
    const { sent, host } = recorder();
    const root = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as Record<string, unknown>;
    const held = createRemoteProxy(
      { module: 'm', base: { module: 'm', ref, released: false }, steps: [] },
      host,
    ) as Record<string, unknown>;
    expect(root.then).toBeUndefined();
    expect(held.then).toBeUndefined();
    expect(await (async () => root)()).toBe(root);
    expect(sent).toHaveLength(0);
  });

  it('records property reads, calls and new, and sends the chain only when awaited', async () => {
    const { sent, host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    const chain = new math.Unit(5, 'cm').to('mm').value;
    expect(sent).toHaveLength(0);
    expect(await chain).toBe('result');
    expect(sent[0]?.steps).toEqual([
      { kind: 'get', key: 'Unit' },
      { kind: 'new', args: [5, 'cm'] },
      { kind: 'get', key: 'to' },
      { kind: 'call', args: ['mm'] },
      { kind: 'get', key: 'value' },
    ]);
  });

  it('supports catch and finally on a pending chain', async () => {
    const host: ProxyHost = {
      run: () => Promise.reject(new Error('no')),
      release: async () => {},
      iterate: () => {
        throw new Error('not used here');
      },
    };
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    expect(await math.det().catch((e: Error) => e.message)).toBe('no');
  });

  it('throws a clear TypeError on set, delete, defineProperty and setPrototypeOf', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    expect(() => {
      math.pi = 3;
    }).toThrow(
      /cannot set a property of a remote value \(m\.pi|cannot set a property of a remote value \(m\)/,
    );
    expect(() => delete math.pi).toThrow(TypeError);
    expect(() => Object.defineProperty(math, 'x', { value: 1 })).toThrow(TypeError);
    expect(() => Object.setPrototypeOf(math, null)).toThrow(TypeError);
    expect(() => Object.freeze(math)).toThrow(TypeError);
  });

  it('looks empty to reflection and refuses to become a primitive', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    expect(Object.keys(math)).toEqual([]);
    expect('det' in math).toBe(false);
    expect(Object.getPrototypeOf(math)).toBeNull();
    expect(() => `${math.pi}`).toThrow(/await it/);
  });

  it('describes itself in util.inspect', () => {
    const { host } = recorder();
    const held = createRemoteProxy(
      { module: 'mathjs', base: { module: 'mathjs', ref, released: false }, steps: [] },
      host,
    );
    expect(inspect(held)).toBe('[Remote mathjs:Matrix#7@srv]');
    expect(inspect((held as any).size())).toBe('[Remote mathjs:Matrix#7@srv.size(…)]');
  });

  it('compiles nested pending calls into one program with slots (promise pipelining)', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    const ops: Op[] = [];
    const result = compile(nodeOf(math.det(math.matrix([[1, 2]])))!, ops);
    expect(ops).toEqual([
      { op: 'call', target: null, path: ['matrix'], args: [[[1, 2]]] },
      { op: 'call', target: null, path: ['det'], args: [new Slot(0)] },
    ]);
    expect(result).toEqual(new Slot(1));
  });

  it('passes a held reference as a RemoteRef argument, also nested in plain data', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    const held = createRemoteProxy(
      { module: 'm', base: { module: 'm', ref, released: false }, steps: [] },
      host,
    );
    const ops: Op[] = [];
    compile(nodeOf(math.apply({ m: held }, [held]))!, ops);
    expect(ops[0]).toMatchObject({ args: [{ m: ref }, [ref]] });
  });

  it('passes arguments without proxies on as they are, and copies only what holds one', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    const held = createRemoteProxy(
      { module: 'm', base: { module: 'm', ref, released: false }, steps: [] },
      host,
    );
    const plain = { rows: [[1, 2]], tags: new Set(['a']), meta: new Map([['k', 1]]) };
    const mixed = { plain, inner: new Map([['m', held]]) };
    const ops: Op[] = [];
    compile(nodeOf(math.f(plain, mixed))!, ops);
    const [a, b] = (ops[0] as { args: any[] }).args;
    expect(a).toBe(plain);
    expect(b).not.toBe(mixed);
    expect(b.plain).toBe(plain);
    expect(b.inner.get('m')).toEqual(ref);
    expect(mixed.inner.get('m')).toBe(held);
  });

  it('refuses a reference of another module and a released reference', () => {
    const { host } = recorder();
    const math = createRemoteProxy({ module: 'm', base: null, steps: [] }, host) as any;
    const other = createRemoteProxy(
      { module: 'other', base: { module: 'other', ref, released: false }, steps: [] },
      host,
    );
    expect(() => compile(nodeOf(math.det(other))!, [])).toThrow(/lives in module other/);
    const released = { module: 'm', ref, released: true };
    expect(() => compile({ module: 'm', base: released, steps: [{ kind: 'call', args: [] }] }, [])).toThrow(
      /was released/,
    );
  });
});
