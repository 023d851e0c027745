import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { bytesFromQuantity, decide, type ModuleCallStats, type PolicySettings } from './policy.js';

const adaptive: PolicySettings = {
  name: 'adaptive',
  interval_s: 30,
  client_memory_budget: '512Mi',
  min_gain_ms: 0.2,
};

function modules(config: Record<string, object>) {
  return [...parseConfig({ module_config: config }).modules.values()].map((m) => ({
    ...m,
    mode: m.loadType,
  }));
}

const stats = (remoteMs: number, remoteCalls: number, localMs?: number, localCalls = 0): ModuleCallStats => ({
  remote: { calls: remoteCalls, totalMs: remoteMs * remoteCalls },
  local: { calls: localCalls, totalMs: (localMs ?? 0) * localCalls },
  localUnavailable: false,
});

describe('placement policies', () => {
  it('default follows load_type and sends auto remote', () => {
    const d = decide(
      { ...adaptive, name: 'default' },
      {
        modules: modules({ a: { load_type: 'local' }, b: { load_type: 'remote' }, c: { load_type: 'auto' } }),
        stats: new Map(),
        clientBudget: undefined,
        current: new Map(),
      },
    );
    expect(Object.fromEntries([...d].map(([k, v]) => [k, v.placement]))).toEqual({
      a: 'local',
      b: 'remote',
      c: 'remote',
    });
  });

  it('adaptive places auto modules local by gain per MiB within the client budget', () => {
    const d = decide(adaptive, {
      modules: modules({
        // 1.0 ms saved on 50% of calls, 100Mi -> best per MiB
        fast: { load_type: 'auto', lib_mem_size_req: '100Mi' },
        // 2.0 ms saved on 40% of calls, but 400Mi: 100 + 400 = 500Mi still fits 512Mi
        heavy: { load_type: 'auto', lib_mem_size_req: '400Mi' },
        // 5 ms saved on 10% of calls, 300Mi: would exceed the budget after the two above
        big: { load_type: 'auto', lib_mem_size_req: '300Mi' },
        pinned: { load_type: 'remote' },
      }),
      stats: new Map([
        ['fast', stats(1.2, 50, 0.2, 0)],
        ['heavy', stats(2.0, 40)],
        ['big', stats(5.0, 10)],
      ]),
      clientBudget: undefined,
      current: new Map(),
    });
    expect(d.get('fast')?.placement).toBe('local');
    expect(d.get('heavy')?.placement).toBe('local');
    expect(d.get('big')).toMatchObject({
      placement: 'remote',
      reason: expect.stringContaining('memory budget'),
    });
    expect(d.get('pinned')).toEqual({ placement: 'remote', reason: 'load_type remote' });
    expect(d.get('fast')?.reason).toMatch(/saves 1\.20 ms\/call/);
  });

  it('adaptive keeps a module remote when local would not save min_gain_ms', () => {
    const d = decide(adaptive, {
      modules: modules({ m: { load_type: 'auto', lib_mem_size_req: '10Mi' } }),
      stats: new Map([['m', stats(0.5, 100, 0.4, 100)]]),
      clientBudget: undefined,
      current: new Map([['m', 'local']]),
    });
    expect(d.get('m')).toMatchObject({
      placement: 'remote',
      reason: expect.stringContaining('< min_gain_ms'),
    });
  });

  it('adaptive uses the smallest budget a client reported', () => {
    const d = decide(adaptive, {
      modules: modules({ m: { load_type: 'auto', lib_mem_size_req: '100Mi' } }),
      stats: new Map([['m', stats(3, 10)]]),
      clientBudget: bytesFromQuantity('64Mi'),
      current: new Map(),
    });
    expect(d.get('m')?.placement).toBe('remote');
  });

  it('adaptive leaves a module without calls where it is, and keeps unimportable ones remote', () => {
    const d = decide(adaptive, {
      modules: modules({ quiet: { load_type: 'auto' }, missing: { load_type: 'auto' } }),
      stats: new Map([['missing', { ...stats(9, 10), localUnavailable: true }]]),
      clientBudget: undefined,
      current: new Map([['quiet', 'local']]),
    });
    expect(d.get('quiet')?.placement).toBe('local');
    expect(d.get('missing')?.placement).toBe('remote');
  });

  it('reads Kubernetes memory quantities', () => {
    expect(bytesFromQuantity('100Mi')).toBe(100 * 1024 * 1024);
    expect(bytesFromQuantity('1G')).toBe(1e9);
    expect(() => bytesFromQuantity('lots')).toThrow(/not a memory quantity/);
    expect(bytesFromQuantity('500m')).toBe(0.5);
  });
});

describe('placement of Python modules', () => {
  it('never moves an auto Python module into the client, whatever the statistics say', () => {
    const d = decide(adaptive, {
      modules: modules({ np: { runtime: 'python', load_type: 'auto' } }),
      stats: new Map([['np', stats(50, 100, 0.01, 100)]]),
      clientBudget: undefined,
      current: new Map(),
    });
    expect(d.get('np')).toEqual({
      placement: 'remote',
      reason: 'a Python module runs on module-servers only',
    });
  });

  it('runs a Python module with load_type local remote, saying why', () => {
    for (const policy of [adaptive, { ...adaptive, name: 'default' as const }]) {
      const d = decide(policy, {
        modules: modules({ np: { runtime: 'python', load_type: 'local' } }),
        stats: new Map(),
        clientBudget: undefined,
        current: new Map(),
      });
      expect(d.get('np')).toEqual({
        placement: 'remote',
        reason: 'a Python module runs on module-servers only (load_type local ignored)',
      });
    }
  });
});
