/**
 * Module management (JSORC's actions load / unload / status / config): list, inspect, start and
 * stop modules, set their mode and their config at runtime.
 */
import { Type as T, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Rest } from '@splice-orc/protocol';
import type { FastifyInstance } from 'fastify';
import type { ModuleSpec } from '../../config.js';
import { ModuleConfig } from '../../config-schema.js';
import { ServiceError } from '../../errors.js';
import { checkRestChange, type PackagePolicy } from '../../orchestration/package-policy.js';
import type { ModuleRegistry, ModuleView } from '../../orchestration/registry.js';
import type { PlacementEngine } from '../../placement/engine.js';
import { ALWAYS, CONTROL, CONTROL_ROUTE, NAMED, responses, WITH_BODY } from '../responses.js';

/** What the module routes need. */
export interface ModuleRouteOptions {
  registry: ModuleRegistry;
  placement: PlacementEngine;
  baseDir: string;
  /** What a config sent over REST may install and switch on. */
  packagePolicy: PackagePolicy;
  /** The module's spec as the config file has it. */
  fileSpec: (name: string) => ModuleSpec | undefined;
  /** Saves what was changed at runtime. */
  persist: () => void;
}

const LoadBody = T.Object({ mode: T.Optional(Rest.Mode) }, { additionalProperties: false });

type Params = { Params: { name: string } };

const NameParams = T.Object({
  name: T.String({ description: 'module name, URL-encoded (%40scope%2Fpkg)', maxLength: 256 }),
});
/** A route on one module: its summary, the statuses it answers beyond ALWAYS and NAMED, its 200. */
const doc = (
  summary: string,
  ok: TSchema,
  statuses: readonly number[] = [],
  extra: Record<string, unknown> = {},
) => ({
  schema: {
    tags: ['modules'],
    summary,
    params: NameParams,
    response: responses(ok, [...ALWAYS, ...NAMED, ...statuses]),
    ...extra,
  },
});
/** Deadline of the Stats call that lists a ready module's exports, ms. */
const EXPORTS_TIMEOUT_MS = 5_000;
/** What starting a module may answer: its install, its start, the cold-start queue. */
const STARTS = [502, 504, ...WITH_BODY] as const;

export function moduleRoutes(app: FastifyInstance, o: ModuleRouteOptions): void {
  const { registry, placement } = o;
  /** A module's view with its mode and placement. */
  const withPlacement = (view: ModuleView): Rest.ModuleView => {
    const decision = placement.decision(view.name);
    return {
      ...view,
      mode: placement.mode(registry.spec(view.name)),
      placement: decision.placement,
      placement_reason: decision.reason,
    };
  };

  app.get(
    '/modules',
    {
      schema: {
        tags: ['modules'],
        summary: 'Every configured module and its state',
        response: responses(T.Object({ modules: T.Array(Rest.ModuleView) }), ALWAYS),
      },
    },
    async () => ({ modules: registry.list().map(withPlacement) }),
  );

  app.get<Params>(
    '/modules/:name',
    doc('One module: mode, placement and why, replicas, state, usage', Rest.ModuleView),
    async (request) => {
      const { name } = request.params;
      return { ...withPlacement(await registry.inspect(name)), usage: await registry.usage(name) };
    },
  );

  app.post<Params & { Body: unknown }>(
    '/modules/:name/load',
    {
      ...doc(
        'Set the mode (body {"mode"?: remote | local | auto}) and start the module',
        Rest.ModuleView,
        [...STARTS, ...CONTROL],
        {
          body: LoadBody,
        },
      ),
      config: CONTROL_ROUTE,
      // The body is optional (a bare POST loads): it is checked below, where none means {}.
      attachValidation: true,
    },
    async (request) => {
      const { name } = request.params;
      const spec = registry.spec(name);
      // No body at all loads as it is; a body, even `null`, must be the object below.
      const body = request.body === undefined ? {} : request.body;
      if (!Value.Check(LoadBody, body)) {
        throw new ServiceError('BAD_REQUEST', 'the load body is {"mode"?: "remote" | "local" | "auto"}');
      }
      if (body.mode === 'local' && spec.runtime === 'python') {
        throw new ServiceError(
          'BAD_REQUEST',
          `${name} is a Python module: a Node client cannot import it, so it cannot be placed local`,
        );
      }
      if (body.mode && body.mode !== placement.mode(spec)) {
        placement.setMode(name, body.mode);
        o.persist();
      }
      // A module placed local runs in the clients: nothing to start here.
      if (placement.decision(name).placement === 'local') return withPlacement(registry.view(name));
      return withPlacement(await registry.load(name));
    },
  );

  const unload = async (name: string) => withPlacement(await registry.unload(name));
  app.delete<Params>(
    '/modules/:name',
    { ...doc("Stop the module's servers", Rest.ModuleView, [502, ...CONTROL]), config: CONTROL_ROUTE },
    async (request) => unload(request.params.name),
  );
  app.post<Params>(
    '/modules/:name/unload',
    { ...doc("Stop the module's servers", Rest.ModuleView, [502, ...CONTROL]), config: CONTROL_ROUTE },
    async (request) => unload(request.params.name),
  );

  // What clients ask before their first call: cheap, unlike the full view (stats, usage).
  app.get<Params>(
    '/modules/:name/placement',
    doc('Where new calls of the module run, and why', Rest.PlacementAnswer),
    async (request) => {
      const { name } = request.params;
      const decision = placement.decision(name);
      return {
        name,
        mode: placement.mode(registry.spec(name)),
        placement: decision.placement,
        reason: decision.reason,
      };
    },
  );

  app.get<Params>(
    '/modules/:name/exports',
    doc(
      "The names a caller can reach on the module's root (what `import { name }` links to); starts the module",
      Rest.ModuleExports,
      STARTS,
    ),
    async (request) => {
      const { name } = request.params;
      const spec = registry.spec(name);
      const exports = await registry.exports(name, { timeoutMs: EXPORTS_TIMEOUT_MS });
      return { name, runtime: spec.runtime, exports };
    },
  );

  app.get<Params>('/modules/:name/config', doc("The module's config", ModuleConfig), async (request) =>
    registry.rawConfig(request.params.name),
  );

  app.put<Params & { Body: unknown }>(
    '/modules/:name/config',
    {
      ...doc(
        'Replace the module config (validated like config.json, kept across restarts)',
        Rest.ModuleView,
        [403, ...STARTS, ...CONTROL],
        { body: ModuleConfig },
      ),
      config: CONTROL_ROUTE,
      // The body is checked below, like the file, so that every problem is listed with its path.
      attachValidation: true,
    },
    async (request) => {
      const { name } = request.params;
      const view = await registry.changeConfig(name, request.body, {
        check: (next, before) => checkRestChange(next, before, o.fileSpec(name), o.packagePolicy, o.baseDir),
        persist: o.persist,
        changed: () => placement.decide(),
        persistFailed: (error) =>
          request.log.error({ err: error }, 'cannot persist the restored module config'),
      });
      return withPlacement(view);
    },
  );
}
