/**
 * Placement policy (JSORC's actionpolicy set/get) and the call statistics clients report for it.
 */
import { Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Rest } from '@splice-orc/protocol';
import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../../errors.js';
import type { ModuleRegistry } from '../../orchestration/registry.js';
import type { PlacementEngine } from '../../placement/engine.js';
import type { PolicySettings } from '../../placement/policy.js';
import { ALWAYS, CONTROL, CONTROL_ROUTE, responses, WITH_BODY } from '../responses.js';

const PolicyBody = T.Object(
  {
    name: T.Union([T.Literal('default'), T.Literal('adaptive')]),
    interval_s: T.Optional(T.Number({ minimum: 0.001, maximum: 86_400 })),
    client_memory_budget: T.Optional(T.String({ pattern: '^[0-9]+(\\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$' })),
    min_gain_ms: T.Optional(T.Number({ minimum: 0, maximum: 86_400_000 })),
  },
  { additionalProperties: false },
);

/** What the policy routes need. */
export interface PolicyRouteOptions {
  registry: ModuleRegistry;
  placement: PlacementEngine;
  persist: () => void;
}

export function policyRoutes(
  app: FastifyInstance,
  { registry, placement, persist }: PolicyRouteOptions,
): void {
  app.get(
    '/policy',
    {
      schema: {
        tags: ['policy'],
        summary: 'The placement policy and placements',
        response: responses(Rest.PolicyAnswer, ALWAYS),
      },
    },
    async () => ({ ...placement.settings, placements: placement.placements() }),
  );

  app.put<{ Body: unknown }>(
    '/policy',
    {
      schema: {
        tags: ['policy'],
        summary: 'Set the placement policy',
        body: PolicyBody,
        response: responses(Rest.PolicyAnswer, [...ALWAYS, ...WITH_BODY, ...CONTROL]),
      },
      config: CONTROL_ROUTE,
    },
    async (request) => {
      const body = check(
        PolicyBody,
        request.body,
        '{"name": "default" | "adaptive", "interval_s"?, "client_memory_budget"?, "min_gain_ms"?}',
      );
      const settings: PolicySettings = { ...placement.settings, ...body };
      placement.setPolicy(settings);
      persist();
      return { ...placement.settings, placements: placement.placements() };
    },
  );

  app.post<{ Body: unknown }>(
    '/stats',
    {
      schema: {
        tags: ['policy'],
        summary: 'Client call statistics for the policy',
        body: Rest.StatsReport,
        response: responses(Rest.StatsAnswer, [...ALWAYS, ...WITH_BODY]),
      },
    },
    async (request) => {
      // Checked by the route's body schema (Ajv).
      const report = request.body as Rest.StatsReport;
      placement.report(report, (name) => registry.names().includes(name));
      return { placements: placement.placements(), interval_ms: placement.settings.interval_s * 1000 };
    },
  );
}

function check<S extends Parameters<typeof Value.Check>[0]>(schema: S, body: unknown, shape: string) {
  if (Value.Check(schema, body)) return body as import('@sinclair/typebox').Static<S>;
  const problems = [...Value.Errors(schema, body)].map((e) => `${e.path || '/'}: ${e.message}`);
  throw new ServiceError('BAD_REQUEST', `expected ${shape}: ${problems.slice(0, 5).join('; ')}`);
}
