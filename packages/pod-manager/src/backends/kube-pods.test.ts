import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { failureOf, isReady, replicaFromPod, terminationOf } from './kube-pods.js';

const pod = (status: V1Pod['status'], metadata: V1Pod['metadata'] = {}): V1Pod => ({
  metadata: { name: 'p-1', ...metadata },
  status,
});
const ready = [{ type: 'Ready', status: 'True' }];

describe('replicaFromPod', () => {
  it('is ready with an endpoint once Ready with an IP', () => {
    expect(replicaFromPod(pod({ podIP: '10.0.0.5', conditions: ready }))).toMatchObject({
      id: 'p-1',
      state: 'ready',
      endpoint: '10.0.0.5:50051',
    });
    expect(replicaFromPod(pod({ podIP: 'fd00::5', conditions: ready })).endpoint).toBe('[fd00::5]:50051');
  });

  it('is draining, never ready, once deleted', () => {
    const terminating = pod({ podIP: '10.0.0.5', conditions: ready }, { deletionTimestamp: new Date() });
    expect(isReady(terminating)).toBe(false);
    expect(replicaFromPod(terminating).state).toBe('draining');
  });

  it('is installing while its init container runs, then starting', () => {
    const init = (state: object) => ({
      name: 'install',
      image: 'i',
      imageID: '',
      ready: false,
      restartCount: 0,
      state,
    });
    expect(replicaFromPod(pod({ initContainerStatuses: [init({ running: {} })] })).state).toBe('installing');
    expect(
      replicaFromPod(pod({ initContainerStatuses: [init({ terminated: { exitCode: 0 } })] })).state,
    ).toBe('starting');
  });
});

describe('failureOf', () => {
  it('is none for a pod that is merely pending or pulling', () => {
    const pulling = {
      name: 'module-server',
      image: 'i',
      imageID: '',
      ready: false,
      restartCount: 0,
      state: { waiting: { reason: 'ContainerCreating' } },
    };
    expect(failureOf(pod({ phase: 'Pending' }))).toBeUndefined();
    expect(failureOf(pod({ phase: 'Pending', containerStatuses: [pulling] }))).toBeUndefined();
  });

  it('names a failed pod with its reason', () => {
    expect(failureOf(pod({ phase: 'Failed', reason: 'Evicted', message: 'low on memory' }))).toBe(
      'pod failed: Evicted: low on memory',
    );
  });
});

describe('terminationOf', () => {
  const since = Date.parse('2026-01-01T00:00:10Z');
  const withServer = (status: object): V1Pod => ({
    status: {
      containerStatuses: [
        { name: 'module-server', image: 'i', imageID: '', ready: false, restartCount: 1, ...status },
      ],
    },
  });
  it('names an OOM kill since the call began, from the last state of a restarted container', () => {
    const pod = withServer({
      lastState: {
        terminated: { exitCode: 137, reason: 'OOMKilled', finishedAt: new Date('2026-01-01T00:00:11Z') },
      },
    });
    expect(terminationOf(pod, since)).toBe(
      'OOMKilled: it used more memory than its limit (lib_mem_limit) (exit 137)',
    );
  });

  it('reads a container that has not restarted yet, and ignores ends before the call', () => {
    const now = withServer({
      state: { terminated: { exitCode: 1, reason: 'Error', finishedAt: new Date(since) } },
    });
    expect(terminationOf(now, since)).toBe('Error (exit 1)');
    const earlier = withServer({
      lastState: { terminated: { exitCode: 137, reason: 'OOMKilled', finishedAt: new Date(since - 60_000) } },
    });
    expect(terminationOf(earlier, since)).toBeUndefined();
    expect(terminationOf({}, since)).toBeUndefined();
  });
});
