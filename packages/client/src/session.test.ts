/**
 * The session against a link that answers in memory: what programs it sends, where, and how it
 * keeps the references it receives.
 */
import {
  decode,
  encode,
  type InvokeRequest,
  PROGRAM_VERSION,
  RemoteRef,
  SpliceError,
} from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import type { Link, LinkCallOptions } from './link.js';
import type { PlacementTracker } from './placement.js';
import { Session } from './session.js';

/** A link that records every program and answers with what `answer` returns for it. */
function memoryLink(answer: (request: InvokeRequest) => unknown) {
  const sent: Array<{ request: InvokeRequest; route: string | undefined }> = [];
  let failures = 0;
  const link: Link = {
    async invoke(_module: string, body: Uint8Array, options: LinkCallOptions) {
      const request = decode(body) as InvokeRequest;
      sent.push({ request, route: options.route });
      if (failures > 0) {
        failures--;
        throw new SpliceError('UNAVAILABLE', 'down');
      }
      return encode({ v: PROGRAM_VERSION, ok: true, value: answer(request), lease: 60_000 });
    },
  };
  const placement = {
    linkFor: async () => link,
    close() {},
    report: async () => {},
  } as unknown as PlacementTracker;
  return { sent, placement, failNext: (n = 1) => (failures = n) };
}

const matrixRef = new RemoteRef('server-a', 7, 'object', 'Matrix');

describe('Session', () => {
  it('turns references into proxies whose calls go to the server holding them', async () => {
    const { sent, placement } = memoryLink((r) =>
      r.ops[0]?.op === 'call' && r.ops[0].path[0] === 'matrix' ? matrixRef : 42,
    );
    const session = new Session({ placement, timeoutMs: 1_000 });
    const math = session.root('m') as any;
    const m = await math.matrix([[1]]);
    expect(await m.size()).toBe(42);
    expect(sent[1]).toMatchObject({
      route: 'server-a',
      request: { session: session.id, ops: [{ op: 'call', target: matrixRef, path: ['size'], args: [] }] },
    });
    await session.close();
  });

  it('sends a release to the holder, and refuses calls on the released reference without sending', async () => {
    const { sent, placement } = memoryLink(() => matrixRef);
    const session = new Session({ placement, timeoutMs: 1_000 });
    const m = await (session.root('m') as any).matrix([[1]]);
    const handle = (await import('./remote-proxy.js')).nodeOf(m)!.base!;
    await session.release(handle);
    expect(sent.at(-1)).toMatchObject({ route: 'server-a', request: { ops: [{ op: 'release', ids: [7] }] } });
    const count = sent.length;
    await expect(m.size()).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(sent).toHaveLength(count);
    await session.close();
  });

  it('keeps a release whose program failed, and sends it with the next program to that server', async () => {
    const { sent, placement, failNext } = memoryLink(() => matrixRef);
    const session = new Session({ placement, timeoutMs: 1_000 });
    const root = session.root('m') as any;
    const a = await root.matrix([[1]]);
    const b = await root.matrix([[2]]);
    failNext();
    const { nodeOf } = await import('./remote-proxy.js');
    await expect(session.release(nodeOf(a)!.base!)).rejects.toThrow('down');
    await b.size();
    expect(sent.at(-1)?.request.ops).toEqual([
      { op: 'call', target: matrixRef, path: ['size'], args: [] },
      { op: 'release', ids: [7] },
    ]);
    await session.close();
  });
});
