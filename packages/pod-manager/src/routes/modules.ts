/** Module management: list, inspect, start and stop modules explicitly. */
import type { FastifyInstance } from 'fastify';
import type { ModuleRegistry } from '../registry.js';

export function moduleRoutes(app: FastifyInstance, { registry }: { registry: ModuleRegistry }): void {
  app.get('/modules', async () => ({ modules: registry.list() }));

  app.get<{ Params: { name: string } }>('/modules/:name', async (request) =>
    registry.inspect(request.params.name),
  );

  app.post<{ Params: { name: string } }>('/modules/:name/load', async (request) =>
    registry.load(request.params.name),
  );

  app.delete<{ Params: { name: string } }>('/modules/:name', async (request) =>
    registry.unload(request.params.name),
  );

  app.post<{ Params: { name: string } }>('/modules/:name/unload', async (request) =>
    registry.unload(request.params.name),
  );
}
