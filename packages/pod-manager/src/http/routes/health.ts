/** Liveness and readiness of the pod-manager itself (not of its modules: see GET /modules). */
import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../../errors.js';
import { responses } from '../responses.js';

export function healthRoutes(app: FastifyInstance, state: { closing: boolean }): void {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness',
        security: [],
        response: responses(T.Object({ status: T.Literal('ok') }), [500]),
      },
      config: { public: true },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness (503 while stopping)',
        security: [],
        response: responses(T.Object({ status: T.Literal('ready') }), [500, 503]),
      },
      config: { public: true },
    },
    async () => {
      if (state.closing) throw new ServiceError('SHUTTING_DOWN', 'the pod-manager is shutting down');
      return { status: 'ready' };
    },
  );
}
