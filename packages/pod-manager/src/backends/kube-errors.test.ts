import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../errors.js';
import { KubeApiError, kubeRequest } from './kube-errors.js';

/** A failure as client-node throws it: the Status object arrives as the body's text. */
const answer = (code: number, status: object | string) =>
  new ApiException(code, 'x', typeof status === 'string' ? status : JSON.stringify(status), {});
const timeout = Object.assign(new Error('The operation was aborted due to timeout'), {
  name: 'TimeoutError',
});

const CASES: Array<{
  name: string;
  thrown: unknown;
  read: Partial<KubeApiError>;
  message: string;
}> = [
  {
    name: '404 NotFound',
    thrown: answer(404, { reason: 'NotFound', message: 'deployments.apps "a" not found' }),
    read: { status: 404, reason: 'NotFound', notFound: true, conflict: false, invalid: false },
    message: 'cannot do it: deployments.apps "a" not found (HTTP 404)',
  },
  {
    name: '409 AlreadyExists',
    thrown: answer(409, { reason: 'AlreadyExists', message: 'secrets "t" already exists' }),
    read: { status: 409, reason: 'AlreadyExists', notFound: false, conflict: true, invalid: false },
    message: 'cannot do it: secrets "t" already exists (HTTP 409)',
  },
  {
    name: '422 Invalid',
    thrown: answer(422, { reason: 'Invalid', message: 'the server rejected our request' }),
    read: { status: 422, reason: 'Invalid', notFound: false, conflict: false, invalid: true },
    message: 'cannot do it: the server rejected our request (HTTP 422)',
  },
  {
    name: '403 names the Role',
    thrown: answer(403, { reason: 'Forbidden', message: 'cannot create deployments' }),
    read: { status: 403, reason: 'Forbidden', notFound: false },
    message:
      "cannot do it: forbidden (the pod-manager's service account lacks this permission; see k8s/role.yaml): cannot create deployments",
  },
  {
    name: 'a body that is not a Status object',
    thrown: answer(502, 'Bad Gateway'),
    read: { status: 502, reason: undefined, message: 'Bad Gateway' },
    message: 'cannot do it: Bad Gateway (HTTP 502)',
  },
  {
    name: 'a Status object without a message',
    thrown: new ApiException(500, 'x', { kind: 'Status' }, {}),
    read: { status: 500, message: 'HTTP 500' },
    message: 'cannot do it: HTTP 500 (HTTP 500)',
  },
  {
    name: 'no answer in time',
    thrown: timeout,
    read: { status: undefined, reason: undefined, notFound: false },
    message: 'cannot do it: the Kubernetes API server is unreachable: no answer from the API server in time',
  },
  {
    name: 'a refused connection',
    thrown: new Error('connect ECONNREFUSED 127.0.0.1:6443'),
    read: { status: undefined, message: 'connect ECONNREFUSED 127.0.0.1:6443' },
    message: 'cannot do it: the Kubernetes API server is unreachable: connect ECONNREFUSED 127.0.0.1:6443',
  },
];

describe('KubeApiError', () => {
  for (const c of CASES) {
    it(`reads ${c.name} and maps it to CLUSTER_ERROR`, () => {
      const failure = KubeApiError.from(c.thrown);
      expect(failure).toMatchObject(c.read);
      const error = failure.toServiceError('do it');
      expect(error.code).toBe('CLUSTER_ERROR');
      expect(error.message).toBe(c.message);
      expect(error.cause).toBe(c.thrown);
    });
  }

  it('keeps a service error as it is', () => {
    const thrown = new ServiceError('START_TIMEOUT', 'slow');
    expect(KubeApiError.from(thrown).toServiceError('do it')).toBe(thrown);
  });
});

describe('kubeRequest', () => {
  it('resolves with what the request resolves with', async () => {
    await expect(kubeRequest('read it', Promise.resolve({ a: 1 }), 404)).resolves.toEqual({ a: 1 });
  });

  it('resolves undefined for the expected answer only', async () => {
    const gone = answer(404, { reason: 'NotFound', message: 'gone' });
    await expect(kubeRequest('read it', Promise.reject(gone), 404)).resolves.toBeUndefined();
    await expect(kubeRequest('create it', Promise.reject(gone), 409)).rejects.toMatchObject({
      code: 'CLUSTER_ERROR',
      message: 'cannot create it: gone (HTTP 404)',
    });
    await expect(kubeRequest('read it', Promise.reject(gone))).rejects.toBeInstanceOf(ServiceError);
  });
});
