/**
 * The orchestration core (registry, cold-start queue, lifecycle loop) against the in-memory
 * backend: fast, exact tests of the rules that sit above the Backend interface.
 */
import { getEventListeners } from 'node:events';
import { Code, SpliceError } from '@splice-orc/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { createMemoryBackend, type MemoryBackend, startFailure } from '../backends/memory.js';
import { parseConfig } from '../config.js';
import { ColdStartQueue } from './cold-start.js';
import type { Invoker, Target } from './invoker.js';
import { startLifecycle } from './lifecycle.js';
import { ModuleRegistry } from './registry.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet } as never;

/** An invoker that answers for the memory backend's endpoints, or fails as told. */
function fakeInvoker() {
  const calls: string[] = [];
  let failNext: { error: SpliceError; meanwhile: () => void } | undefined;
  const invoker = {
    calls,
    /** The next call fails with `error`, after `meanwhile` (the server dying, say) happened. */
    failNextWith(error: SpliceError, meanwhile: () => void = () => {}) {
      failNext = { error, meanwhile };
    },
    invoke: async (target: Target) => {
      calls.push(target.endpoint);
      const failure = failNext;
      failNext = undefined;
      if (failure) {
        failure.meanwhile();
        throw failure.error;
      }
      return { payload: Buffer.from([0xc0]), threw: false };
    },
    stats: async () => ({ server_id: 'x', sessions: 0, objects: 0, in_flight: 0, calls: 0 }),
    drop() {},
    close() {},
  };
  return invoker;
}

function registryWith(modules: Record<string, object>, server: Record<string, unknown> = {}, startMs = 5) {
  const backend = createMemoryBackend({ startMs });
  const invoker = fakeInvoker();
  const config = parseConfig({
    module_config: modules,
    server: { state_file: '/tmp/splice-core-test.json', ...server },
  });
  const registry = new ModuleRegistry(config, backend, invoker as unknown as Invoker);
  return { backend, invoker, registry };
}

const forward = (registry: ModuleRegistry, route?: string) =>
  registry.forward('m', Buffer.from([0x90]), { timeoutMs: 1_000, route });

describe('ModuleRegistry', () => {
  it('starts one server for concurrent first calls and forwards each call to it', async () => {
    const { backend, invoker, registry } = registryWith({ m: {} });
    const results = await Promise.all(Array.from({ length: 20 }, () => forward(registry)));
    expect(backend.actions).toEqual(['start m']);
    expect(invoker.calls).toEqual(Array(20).fill('memory:1'));
    expect(results.every((r) => r.coldStartMs !== undefined)).toBe(true);
    expect(registry.view('m')).toMatchObject({ calls_served: 20, state: 'ready' });
  });

  it('routes a call to the replica holding its references, and refuses a gone one', async () => {
    const { registry } = registryWith({ m: { max_replicas: 3 } });
    await forward(registry);
    await registry.addReplica(registry.spec('m'));
    const { invoker } = {
      invoker: (registry as unknown as { invoker: ReturnType<typeof fakeInvoker> }).invoker,
    };
    await forward(registry, 'mem-2');
    expect(invoker.calls.at(-1)).toBe('memory:2');
    await expect(forward(registry, 'mem-9')).rejects.toMatchObject({ code: 'REPLICA_NOT_FOUND' });
  });

  it('sends a call that never reached a server once more, to the restarted server', async () => {
    const { backend, invoker, registry } = registryWith({ m: {} });
    await forward(registry);
    invoker.failNextWith(new SpliceError(Code.UNAVAILABLE, 'refused', { safeToResend: true }), () =>
      backend.crash('m', 'mem-1'),
    );
    await expect(forward(registry)).resolves.toMatchObject({ payload: Buffer.from([0xc0]) });
    expect(invoker.calls).toEqual(['memory:1', 'memory:1', 'memory:2']);
  });

  it('does not send again a call that may have run', async () => {
    const { backend, invoker, registry } = registryWith({ m: {} });
    await forward(registry);
    invoker.failNextWith(
      new SpliceError(Code.UNAVAILABLE, 'lost during the call', { safeToResend: false }),
      () => backend.crash('m', 'mem-1'),
    );
    await expect(forward(registry)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/went away during the call, which may or may not have run/),
    });
    expect(invoker.calls).toHaveLength(2);
  });

  it('keeps the old config when the backend refuses the new one, in memory and saved', async () => {
    const { backend, registry } = registryWith({ m: { max_replicas: 2 } });
    const saved: number[] = [];
    backend.reconfigure = async () => {
      throw new SpliceError(Code.FAILED_PRECONDITION, 'refused by the cluster');
    };
    const hooks = {
      check: () => {},
      persist: () => saved.push(registry.spec('m').maxReplicas),
      changed: () => {},
      persistFailed: () => {},
    };
    await expect(registry.changeConfig('m', { max_replicas: 3 }, hooks)).rejects.toThrow(
      'refused by the cluster',
    );
    expect(registry.spec('m').maxReplicas).toBe(2);
    expect(saved).toEqual([3, 2]);
  });

  it('lists every config problem, and changes nothing for a change the check refuses', async () => {
    const { registry } = registryWith({ m: {} });
    const hooks = { check: () => {}, persist: () => {}, changed: () => {}, persistFailed: () => {} };
    await expect(registry.changeConfig('m', { max_replicas: 0, extra: 1 }, hooks)).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      extra: { problems: expect.arrayContaining(["/module_config/m: unknown key 'extra'"]) },
    });
    const refusing = {
      ...hooks,
      check: () => {
        throw new Error('no');
      },
    };
    await expect(registry.changeConfig('m', { max_replicas: 2 }, refusing)).rejects.toThrow('no');
    expect(registry.spec('m').maxReplicas).toBe(1);
  });
});

describe('buildApp with the memory backend', () => {
  it('loads, lists and unloads modules through the REST API with no process started', async () => {
    const backend = createMemoryBackend();
    const app = await buildApp(
      parseConfig({ module_config: { m: {} }, server: { state_file: '/tmp/splice-core-app-test.json' } }),
      { backend, logger: false },
    );
    expect((await app.inject({ method: 'POST', url: '/modules/m/load' })).json()).toMatchObject({
      state: 'ready',
      replicas: [{ id: 'mem-1', state: 'ready' }],
    });
    expect((await app.inject({ method: 'DELETE', url: '/modules/m' })).json()).toMatchObject({
      state: 'absent',
    });
    expect(backend.actions).toEqual(['start m', 'stop m']);
    await app.close();
  });
});

describe('ColdStartQueue', () => {
  const spec = parseConfig({ module_config: { m: {} } }).modules.get('m')!;
  const room = () => ({ queued: 0, coldStart: undefined });

  it('refuses past its limit with QUEUE_FULL and past its deadline with COLD_START_TIMEOUT', async () => {
    const backend = createMemoryBackend({ startMs: 100 });
    const queue = new ColdStartQueue({
      backend,
      limit: 1,
      timeoutMs: 20,
      onColdStart: () => {},
      onStartFailed: () => {},
    });
    const waiting = room();
    const first = queue.wait(spec, waiting);
    await expect(queue.wait(spec, waiting)).rejects.toMatchObject({ code: 'QUEUE_FULL', safeToResend: true });
    await expect(first).rejects.toMatchObject({ code: 'COLD_START_TIMEOUT' });
  });

  it('ends a wait whose caller went away, leaving no listener on its signal', async () => {
    const backend = createMemoryBackend({ startMs: 50 });
    const queue = new ColdStartQueue({
      backend,
      limit: 10,
      timeoutMs: 1_000,
      onColdStart: () => {},
      onStartFailed: () => {},
    });
    const controller = new AbortController();
    const waiting = queue.wait(spec, room(), controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });
    const ok = new AbortController();
    await queue.wait(spec, room(), ok.signal);
    expect(getEventListeners(ok.signal, 'abort')).toHaveLength(0);
  });

  it('reports a failed start to every waiter', async () => {
    const backend = createMemoryBackend();
    backend.failStarts('m', startFailure('m'));
    const queue = new ColdStartQueue({
      backend,
      limit: 10,
      timeoutMs: 1_000,
      onColdStart: () => {},
      onStartFailed: () => {},
    });
    const shared = room();
    const results = await Promise.allSettled([queue.wait(spec, shared), queue.wait(spec, shared)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(backend.actions).toEqual(['start m']);
  });
});

describe('lifecycle loop', () => {
  let stop = () => {};
  afterEach(() => stop());
  const loop = (registry: ModuleRegistry, backend: MemoryBackend) => {
    stop = startLifecycle(registry, { intervalMs: 10, scaleWindowMs: 0, scaleDownDelayMs: 0, log: quiet });
    return backend;
  };

  it('brings min_replicas up in waves that at most double', async () => {
    const { backend, registry } = registryWith({ m: { min_replicas: 5, max_replicas: 5 } });
    loop(registry, backend);
    await expect.poll(() => registry.ready('m').length, { timeout: 2_000 }).toBe(5);
    const adds = backend.actions.filter((a) => a.startsWith('add')).length;
    expect(backend.actions[0]).toBe('start m');
    expect(adds).toBe(4);
    // Waves of 1, 2 and 1 after the first server: never more than the replicas already up.
    expect(backend.actions.filter((a) => a === 'start m')).toHaveLength(1);
  });

  it('stops a module idle past idle_timeout_s and leaves a warm one up', async () => {
    const { backend, registry } = registryWith({ idle: { idle_timeout_s: 0.05 }, warm: { keep_warm: true } });
    await registry.forward('idle', Buffer.from([0x90]), { timeoutMs: 1_000 });
    loop(registry, backend);
    await expect.poll(() => registry.ready('warm').length, { timeout: 2_000 }).toBe(1);
    await expect.poll(() => registry.ready('idle').length, { timeout: 2_000 }).toBe(0);
    expect(backend.actions).toContain('stop idle');
    expect(backend.actions).not.toContain('stop warm');
  });
});
