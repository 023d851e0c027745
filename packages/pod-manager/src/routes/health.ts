/** Liveness and readiness of the pod-manager itself (not of its modules: see GET /modules). */
import type { FastifyInstance } from 'fastify';

export function healthRoutes(app: FastifyInstance, state: { closing: boolean }): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (state.closing) return reply.code(503).send({ status: 'stopping' });
    return { status: 'ready' };
  });
}
