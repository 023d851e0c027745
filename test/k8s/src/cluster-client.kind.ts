/**
 * The client SDK against a pod-manager deployed in a real cluster (kind-e2e.sh): modules served by
 * pods the pod-manager creates, remote references, errors, and the Deployments it made.
 */
import { inspect } from 'node:util';
import { connect, RemoteError } from '@splice-orc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const url = process.env.SPLICE_E2E_URL;
const token = process.env.SPLICE_E2E_TOKEN;
if (!url || !token) throw new Error('run through test/k8s/kind-e2e.sh (SPLICE_E2E_URL and SPLICE_E2E_TOKEN)');

const client = connect(url, { token, timeoutMs: 240_000 });
const auth = { authorization: `Bearer ${token}` };

beforeAll(async () => {
  // Cold start: the pod-manager creates the Deployment; the pod installs mathjs and starts.
  const load = await fetch(`${url}/modules/mathjs/load`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: '{}',
    signal: AbortSignal.timeout(280_000),
  });
  expect(load.status).toBe(200);
});
afterAll(() => client.close());

describe('a pod-manager in a kind cluster', () => {
  it('serves calls and remote references from module pods', async () => {
    const math: any = client.module('mathjs');
    expect(await math.add(2, 3)).toBe(5);
    const m = await math.matrix([
      [1, 2],
      [3, 4],
    ]);
    expect(inspect(m)).toMatch(/^\[Remote mathjs:/);
    expect(await math.det(m)).toBeCloseTo(-2);
    const view: any = await (await fetch(`${url}/modules/mathjs`, { headers: auth })).json();
    expect(view.state).toBe('ready');
    expect(view.replicas[0].pod).toMatch(/^splice-mathjs-/);
  });

  it('carries remote errors back as RemoteError', async () => {
    const math: any = client.module('mathjs');
    await expect(math.evaluate('1 +')).rejects.toBeInstanceOf(RemoteError);
  });

  it('starts a second module on demand and removes it on DELETE', async () => {
    const lodash: any = client.module('lodash');
    expect(await lodash.chunk([1, 2, 3, 4], 2)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    const removed = await fetch(`${url}/modules/lodash`, { method: 'DELETE', headers: auth });
    expect(removed.status).toBe(200);
    const view: any = await (await fetch(`${url}/modules/lodash`, { headers: auth })).json();
    expect(view.replicas).toEqual([]);
  });
});
