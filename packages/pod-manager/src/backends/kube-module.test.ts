import { describe, expect, it } from 'vitest';
import { KubeModule } from './kube-module.js';

/** A promise settled from outside, to hold a change or a stop open. */
function gate<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every callback already queued run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

describe('KubeModule', () => {
  it('runs changes one at a time, in order, a failed one included', async () => {
    const module = new KubeModule();
    const log: string[] = [];
    const first = gate();
    const a = module.serial(async () => {
      log.push('a starts');
      await first.promise;
      log.push('a ends');
      throw new Error('a failed');
    });
    const b = module.serial(async () => {
      log.push('b runs');
      return 'b';
    });
    await settle();
    expect(log).toEqual(['a starts']);
    first.resolve();
    await expect(a).rejects.toThrow('a failed');
    await expect(b).resolves.toBe('b');
    expect(log).toEqual(['a starts', 'a ends', 'b runs']);
  });

  it('shares one creation between concurrent ensures, and creates anew once it ended', async () => {
    const module = new KubeModule();
    let creations = 0;
    const created = gate<string>();
    const create = () => {
      creations += 1;
      return created.promise;
    };
    const both = Promise.all([module.ensure(create), module.ensure(create)]);
    created.resolve('hash-1');
    expect(await both).toEqual(['hash-1', 'hash-1']);
    expect(creations).toBe(1);
    await module.ensure(async () => 'hash-2');
    expect(creations).toBe(1);
    expect(await module.ensure(async () => 'hash-3')).toBe('hash-3');
  });

  it('creates after the changes queued before it', async () => {
    const module = new KubeModule();
    const log: string[] = [];
    const change = gate();
    void module.serial(async () => {
      await change.promise;
      log.push('change');
    });
    const creating = module.ensure(async () => {
      log.push('create');
      return undefined;
    });
    await settle();
    expect(log).toEqual([]);
    change.resolve();
    await creating;
    expect(log).toEqual(['change', 'create']);
  });

  it('lets a reconfigure wait for a creation, failed or not, without failing itself', async () => {
    const module = new KubeModule();
    const created = gate<string | undefined>();
    const creating = module.ensure(() => created.promise);
    let waited = false;
    const after = module.afterCreate().then(() => {
      waited = true;
    });
    await settle();
    expect(waited).toBe(false);
    created.reject(new Error('refused'));
    await expect(creating).rejects.toThrow('refused');
    await after;
    expect(waited).toBe(true);
    await expect(module.afterCreate()).resolves.toBeUndefined();
  });

  it('is stopping while a stop runs, and counts the stop from when it begins', async () => {
    const module = new KubeModule();
    const mark = module.stopMark();
    const stopped = gate();
    const stop = module.stop(() => stopped.promise);
    expect(module.stopping).toBe(true);
    expect(module.stoppedSince(mark)).toBe(true);
    // A start that began after this stop does not fail for it.
    const later = module.stopMark();
    expect(module.stoppedSince(later)).toBe(false);
    stopped.reject(new Error('forbidden'));
    await expect(stop).rejects.toThrow('forbidden');
    expect(module.stopping).toBe(false);
    expect(module.stoppedSince(later)).toBe(false);
  });

  it('lets a start wait for the latest stop, which never fails it', async () => {
    const module = new KubeModule();
    await expect(module.afterStop()).resolves.toBeUndefined();
    const first = gate();
    const second = gate();
    const stops = [module.stop(() => first.promise), module.stop(() => second.promise)];
    let waited = false;
    const after = module.afterStop().then(() => {
      waited = true;
    });
    first.resolve();
    await stops[0];
    await settle();
    expect(waited).toBe(false);
    second.reject(new Error('unreachable'));
    await expect(stops[1]).rejects.toThrow('unreachable');
    await after;
    expect(waited).toBe(true);
  });

  it('is starting while a start runs, however it ends', async () => {
    const module = new KubeModule();
    const started = gate();
    const start = module.start(() => started.promise);
    expect(module.starting).toBe(true);
    started.reject(new Error('timeout'));
    await expect(start).rejects.toThrow('timeout');
    expect(module.starting).toBe(false);
  });
});
