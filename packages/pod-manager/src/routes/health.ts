/** Liveness and readiness of the pod-manager itself (not of its modules: see GET /modules). */
import type { FastifyInstance } from 'fastify';

export function healthRoutes(app: FastifyInstance, state: { closing: boolean }): void {
  app.get('/healthz', { schema: { tags: ['health'], summary: 'Liveness', security: [] } }, async () => ({
    status: 'ok',
  }));
  app.get(
    '/readyz',
    { schema: { tags: ['health'], summary: 'Readiness (503 while stopping)', security: [] } },
    async (_request, reply) => {
      if (state.closing) return reply.code(503).send({ status: 'stopping' });
      return { status: 'ready' };
    },
  );
}
