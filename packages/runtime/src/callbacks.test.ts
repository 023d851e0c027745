import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { CallbackRef, type DroppedCallback, encode } from '@splice-orc/protocol';
import { describe, expect, it } from 'vitest';
import { CallbackHub, type CallbackMessage } from './callbacks.js';
import { ObjectTable } from './object-table.js';

/** A hub whose app answers every request at once with `reply`, or never. */
function hubWith(
  reply: (args: Uint8Array) => CallbackMessage | undefined,
  maxPerSession?: number,
  dropped: (session: string, items: DroppedCallback[]) => void = () => {},
) {
  let listener: (m: CallbackMessage) => void = () => {};
  let last: { session: string; request: number; args: Uint8Array } | undefined;
  const hub = new CallbackHub({
    table: new ObjectTable({ leaseMs: 60_000 }),
    serverId: 'srv',
    timeoutMs: 50,
    maxPerSession,
    bind: (value) => value,
    channel: {
      send: (session, request, _callback, args) => {
        last = { session, request, args };
      },
      waitFor: () => (last ? reply(last.args) : undefined),
      listen: (l) => {
        listener = l;
      },
      abandon: () => {},
      dropped,
    },
  });
  return { hub, deliver: (m: CallbackMessage) => listener(m) };
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects garbage until `done` (the registry's callbacks and the hub's flush run on later turns). */
async function collectUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('stubs module code no longer holds', () => {
  it('tells the app which stubs the collector took, with how often each id was bound', async () => {
    const told: DroppedCallback[] = [];
    const { hub } = hubWith(
      () => undefined,
      undefined,
      (session, items) => {
        expect(session).toBe('s');
        told.push(...items);
      },
    );
    const kept = hub.stub('s', new CallbackRef('kept', 'k'));
    (() => {
      hub.stub('s', new CallbackRef('a', 'a'));
      hub.stub('s', new CallbackRef('a', 'a'));
      hub.stub('s', new CallbackRef('b', 'b'));
    })();
    expect(hub.stats().stubs).toBe(3);
    await collectUntil(() => told.length >= 2);
    expect(told.sort((x, y) => x.callback.localeCompare(y.callback))).toEqual([
      { callback: 'a', binds: 2 },
      { callback: 'b', binds: 1 },
    ]);
    expect(hub.stats().stubs).toBe(1);
    // The one module code holds stays, and the same id still gives it.
    expect(hub.stub('s', new CallbackRef('kept', 'k'))).toBe(kept);
  });

  it('binds a collected id afresh, counting from its last notice, and frees its room under the limit', async () => {
    const told: DroppedCallback[] = [];
    const { hub } = hubWith(
      () => undefined,
      1,
      (_session, items) => told.push(...items),
    );
    (() => hub.stub('s', new CallbackRef('a', 'a')))();
    await collectUntil(() => told.length >= 1);
    expect(told).toEqual([{ callback: 'a', binds: 1 }]);
    // The limit of 1 counts live stubs only: another id fits now.
    (() => hub.stub('s', new CallbackRef('b', 'b')))();
    await collectUntil(() => told.length >= 2);
    (() => hub.stub('s', new CallbackRef('a', 'a')))();
    await collectUntil(() => told.length >= 3);
    expect(told.slice(1)).toEqual([
      { callback: 'b', binds: 1 },
      { callback: 'a', binds: 1 },
    ]);
  });
});

describe('callback stubs', () => {
  it('are the same function for the same id, and limited in number per session', () => {
    const { hub } = hubWith(() => undefined, 3);
    const a = hub.stub('s', new CallbackRef('a', 'a'));
    expect(hub.stub('s', new CallbackRef('a', 'a'))).toBe(a);
    hub.stub('s', new CallbackRef('b', 'b'));
    hub.stub('s', new CallbackRef('c', 'c'));
    expect(() => hub.stub('s', new CallbackRef('d', 'd'))).toThrow(/this session has 3 live callbacks here/);
    // another session has its own count
    expect(typeof hub.stub('t', new CallbackRef('d', 'd'))).toBe('function');
  });

  it('return the app’s value, throw its error, and time out when it does not answer', () => {
    const ok = hubWith(() => ({
      t: 'answer',
      session: 's',
      request: 1,
      answer: encode({ ok: true, value: 42 }),
    }));
    expect(ok.hub.stub('s', new CallbackRef('f', 'f'))()).toBe(42);
    const failing = hubWith(() => ({
      t: 'answer',
      session: 's',
      request: 1,
      answer: encode({ ok: false, error: new RangeError('no') }),
    }));
    expect(() => failing.hub.stub('s', new CallbackRef('f', 'f'))()).toThrow(RangeError);
    const silent = hubWith(() => undefined);
    expect(() => silent.hub.stub('s', new CallbackRef('f', 'late'))()).toThrow(
      /^callback late was not answered by the app within 50 ms$/,
    );
  });

  it('fail at once once released, or once the session ended', () => {
    const { hub, deliver } = hubWith(() => undefined);
    const f = hub.stub('s', new CallbackRef('f', 'f'));
    deliver({ t: 'released', session: 's', ids: ['f'] });
    expect(() => f()).toThrow('callback f was released by the app and can no longer be called');
    const g = hub.stub('s', new CallbackRef('g', 'g'));
    deliver({ t: 'closed', session: 's', message: "the app's session has ended" });
    expect(() => g()).toThrow("callback g: the app's session has ended");
    expect(() => hub.stub('s', new CallbackRef('h', 'h'))).toThrow("the app's session has ended");
  });
});
