/**
 * The pod-manager's Fastify app. `buildApp` wires config, backend, registry and routes; only
 * `main.ts` makes it listen.
 */
import { timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { resolve } from 'node:path';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import { checkDepth, Rest } from '@splice-orc/protocol';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
  type preHandlerAsyncHookHandler,
} from 'fastify';

import type { Backend } from './backends/backend.js';
import { createLocalBackend } from './backends/local.js';
import { type Config, parseModuleConfig } from './config.js';
import { ServiceError, serviceErrorFrom } from './errors.js';
import { clientErrorHandler, frameworkErrors, trackRouteMethods } from './http/framework-errors.js';
import { ALWAYS, responses } from './http/responses.js';
import { healthRoutes } from './http/routes/health.js';
import { invokeRoutes } from './http/routes/invoke.js';
import { jobRoutes } from './http/routes/jobs.js';
import { moduleRoutes } from './http/routes/modules.js';
import { observeRoutes } from './http/routes/observe.js';
import { policyRoutes } from './http/routes/policy.js';
import { openSqliteJobStore } from './jobs/job-store.js';
import { JobScheduler } from './jobs/scheduler.js';
import { Benchmark } from './observe/benchmark.js';
import { createJobMetrics, createMetrics } from './observe/metrics.js';
import { Tracking } from './observe/tracking.js';
import { Invoker } from './orchestration/invoker.js';
import { startLifecycle } from './orchestration/lifecycle.js';
import { packagePolicyFrom } from './orchestration/package-policy.js';
import { ModuleRegistry } from './orchestration/registry.js';
import { readState, writeState } from './orchestration/state-store.js';
import { PlacementEngine } from './placement/engine.js';

/** Options of {@link buildApp}. */
export interface BuildAppOptions {
  /** Fastify's logger option. Default: pino at LOG_LEVEL (info). */
  logger?: FastifyServerOptions['logger'];
  /** A backend to use instead of the one config.server.backend names. */
  backend?: Backend;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The modules and their servers. */
    registry: ModuleRegistry;
    /** What the pod-manager does by itself ('lifecycle' events), for tracking. */
    events: EventEmitter;
    /**
     * Takes no new work from now on (answers 503 SHUTTING_DOWN with Connection: close) while
     * connections stay open, so that clients move off them before `close()` drops the idle ones.
     */
    beginShutdown(): void;
  }
}

/** Builds the app; closing it stops every module-server it started. */
export async function buildApp(config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? { level: config.env.logLevel },
    bodyLimit: config.server.max_payload_bytes,
    // Two log lines per invocation cost more than the forward itself; failures are still logged.
    // Unknown keys are an error, never silently dropped (Fastify's default strips them), and a
    // value of the wrong type is an error, never coerced ({"path": 123} is not "123").
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    logController: new LogController({ disableRequestLogging: !config.env.logRequests }),

    // Module names may be scoped (`@scope/pkg`, sent as %40scope%2Fpkg).
    routerOptions: { maxParamLength: 256 },
    // While closing, requests get the service's own SHUTTING_DOWN (onRequest below), not Fastify's 503.
    return503OnClosing: false,
    frameworkErrors,
    // Routes are known only once registered; the parser's errors come after that.
    clientErrorHandler: clientErrorHandler((url) => methodsOf(url)),
  });
  const methodsOf = trackRouteMethods(app);
  const invoker = new Invoker({
    maxPayloadBytes: config.server.max_payload_bytes,
    coalesce: config.server.coalesce_calls,
  });
  const backend = options.backend ?? (await backendFor(config, app, invoker));
  app.decorate('events', new EventEmitter());
  parseJsonWithDepthLimit(app);
  // Response schemas document the API (OpenAPI) and are checked by tests; answers are serialized
  // as they are, never filtered by a schema that may lag behind the code.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  const registry = new ModuleRegistry(config, backend, invoker);
  const saved = readState(config.server.state_file);
  for (const [name, raw] of Object.entries(saved.modules)) {
    if (!config.modules.has(name)) continue;
    // A change saved by an earlier version may break a rule added since: the file's config stands.
    try {
      registry.setSpec(parseModuleConfig(name, raw, config.baseDir).spec, raw);
    } catch (error) {
      app.log.warn({ module: name, err: error }, 'ignoring a saved runtime config that no longer validates');
    }
  }
  for (const spec of config.modules.values()) {
    if (spec.runtime === 'python' && spec.loadType === 'local') {
      app.log.warn(
        { module: spec.name },
        'load_type local is ignored for a Python module: a Node client cannot import it, so it runs on module-servers',
      );
    }
  }
  const placement = new PlacementEngine({
    settings: saved.policy ?? config.raw.policy,
    modes: saved.modes,
    specs: () => registry.names().map((name) => registry.spec(name)),
    onEvent: (event) => app.events.emit('placement', event),
    onError: (error) => app.log.error({ err: error }, 'placement evaluation failed'),
  });
  placement.start();
  registry.resume().catch((error) => app.log.warn({ err: error }, 'cannot pick up the modules left running'));
  const runtimePolicy = { set: saved.policy !== undefined };
  const persist = () =>
    writeState(config.server.state_file, {
      modules: registry.overrides(),
      modes: placement.modes(),
      policy: runtimePolicy.set ? placement.settings : undefined,
    });
  const state = { closing: false };
  app.decorate('registry', registry);
  app.decorate('beginShutdown', () => {
    state.closing = true;
  });

  app.setErrorHandler((error, request, reply) => {
    // A path no route takes fails before the not-found handler when its body cannot be parsed
    // (QUERY without a content type): it is still a 404 or a 405.
    if (request.is404) return notFound(request, reply);
    const failure = serviceErrorFrom(error);
    if (failure.statusCode >= 500 && failure.code === 'INTERNAL')
      request.log.error({ err: error }, 'request failed');
    reply.code(failure.statusCode).type('application/json').send(failure.toJSON());
  });
  const notFound = (request: FastifyRequest, reply: FastifyReply) => {
    const allowed = methodsOf(request.url);
    const failure =
      allowed.length > 0
        ? new ServiceError(
            'METHOD_NOT_ALLOWED',
            `${request.method} is not allowed here; allowed: ${allowed.join(', ')}`,
          )
        : new ServiceError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url}`);
    if (allowed.length > 0) reply.header('allow', allowed.join(', '));
    reply.code(failure.statusCode).type('application/json').send(failure.toJSON());
  };
  app.setNotFoundHandler(notFound);
  const token = config.server.auth_token;
  const expected = token ? Buffer.from(`Bearer ${token}`) : undefined;
  // Callback hooks, not async ones: they run on every request, and an async hook costs a promise.
  app.addHook('onRequest', (request, _reply, done) => {
    // Routes marked public (health, the API document) by their route config, whatever the query;
    // a path no route takes is answered 404 or 405, which runs nothing, with or without a token.
    if (request.routeOptions.config.public === true || request.is404) return done();
    if (expected && !sameSecret(request.headers.authorization, expected)) {
      return done(
        new ServiceError('UNAUTHENTICATED', 'missing or wrong bearer token (Authorization: Bearer <token>)'),
      );
    }
    if (state.closing) return done(new ServiceError('SHUTTING_DOWN', 'the pod-manager is shutting down'));
    done();
  });
  app.addHook('preClose', async () => {
    state.closing = true;
  });
  await limitControlRoutes(app, config.server.control_rate_limit_per_minute);
  // While closing, every answer closes its connection: a keep-alive connection that was busy when
  // the close began must not hold the old process (and its module-servers) alive once it is idle.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (state.closing && request.raw.httpVersionMajor === 1) reply.header('connection', 'close');
    done(null, payload);
  });
  const benchmark = new Benchmark();
  const tracking = new Tracking();
  registry.onCall((event) => {
    benchmark.record(event);
    tracking.call(event);
  });
  app.events.on('placement', (event) => tracking.placement(event));
  app.events.on('lifecycle', (event) => tracking.lifecycle(event));
  const stopLifecycle = startLifecycle(registry, {
    intervalMs: config.server.lifecycle_interval_ms,
    scaleWindowMs: config.server.scale_window_s * 1000,
    scaleDownDelayMs: config.server.scale_down_delay_s * 1000,
    log: app.log,
    onEvent: (event) => app.events.emit('lifecycle', event),
  });
  const jobStore = openSqliteJobStore(config.jobs.database);
  const jobEvents = createJobMetrics();
  const scheduler = new JobScheduler({
    store: jobStore,
    registry,
    limits: {
      maxRunning: config.jobs.max_running,
      maxWorkers: config.jobs.max_workers,
      maxQueued: config.jobs.max_queued,
      keepFinished: config.jobs.keep_finished,
    },
    defaultTimeoutMs: config.server.invoke_timeout_ms,
    log: app.log,
    events: jobEvents,
  });
  app.addHook('onClose', async () => {
    // Jobs stay running in the store: the next pod-manager on this state directory resumes them.
    await scheduler.close();
    jobStore.close();
    stopLifecycle();
    placement.stop();
    await registry.close();
    invoker.close();
  });
  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'splice-orc pod-manager',
        version: '0.1.0',
        description: 'Use any Node module as a remote service.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transformObject: (documents) =>
      finishDocument('openapiObject' in documents ? documents.openapiObject : documents.swaggerObject),
  });
  app.get('/openapi.json', { schema: { hide: true }, config: { public: true } }, async () => app.swagger());
  const metrics = createMetrics(registry, app.events, { jobs: jobStore, events: jobEvents });
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['observe'],
        summary: 'Prometheus metrics',
        response: responses(
          {
            description: 'Prometheus text exposition format',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          ALWAYS,
        ),
      },
    },
    async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()),
  );

  healthRoutes(app, state);
  moduleRoutes(app, {
    registry,
    placement,
    baseDir: config.baseDir,
    packagePolicy: packagePolicyFrom(config.server.package_policy, config.baseDir),
    fileSpec: (name) => config.modules.get(name),
    persist,
  });
  policyRoutes(app, {
    registry,
    placement,
    persist: () => {
      runtimePolicy.set = true;
      persist();
    },
  });
  observeRoutes(app, { registry, benchmark, tracking });
  invokeRoutes(app, { registry, placement, maxTimeoutMs: config.server.invoke_timeout_ms });
  jobRoutes(app, { scheduler, store: jobStore, maxBodyBytes: config.jobs.max_body_bytes });
  app.addHook('onReady', async () => scheduler.resume());
  return app;
}

/**
 * Control routes (config `control: true`) count against one budget per client address: `perMinute`
 * of them a minute, over all of them (a fixed window); past it, 429 RATE_LIMITED with Retry-After.
 * The check runs after the request is validated (a refused one costs nothing) and only on those
 * routes, so calls to modules pay nothing for it.
 */
async function limitControlRoutes(app: FastifyInstance, perMinute: number): Promise<void> {
  if (perMinute === 0) return;
  await app.register(fastifyRateLimit, { global: false });
  const limit = app.createRateLimit({ max: perMinute, timeWindow: 60_000, keyGenerator: (r) => r.ip });
  const check: preHandlerAsyncHookHandler = async (request, reply) => {
    // A body the schema refused, on a route that checks it in its handler (attachValidation, to
    // name every field): the handler answers 400, and that costs no budget.
    if (request.validationError && request.body !== undefined) return;
    const answer = await limit(request);
    if (answer.isAllowed || !answer.isExceeded) return;
    reply.header('retry-after', String(answer.ttlInSeconds));
    throw new ServiceError(
      'RATE_LIMITED',
      `${request.ip} made ${perMinute} control requests (load, unload, config, policy, jobs) within a minute: retry in ${answer.ttlInSeconds} s`,
      { extra: { retry_after_s: answer.ttlInSeconds } },
    );
  };
  app.addHook('onRoute', (route) => {
    if (route.config?.control !== true) return;
    route.preHandler = [check, ...(route.preHandler ? [route.preHandler].flat() : [])];
  });
}

async function backendFor(config: Config, app: FastifyInstance, invoker: Invoker): Promise<Backend> {
  const { server } = config;
  // What module-servers are started with, whichever backend starts them.
  const shared = {
    startTimeoutMs: server.start_timeout_ms,
    leaseMs: server.lease_ms,
    graceMs: server.grace_ms,
    maxPayloadBytes: server.max_payload_bytes,
    liveness: { intervalMs: server.liveness_interval_ms, failures: server.liveness_failures },
    limits: {
      maxObjectsPerSession: server.max_objects_per_session,
      maxObjects: server.max_objects_per_server,
      maxSessions: server.max_sessions_per_server,
    },
    log: app.log,
    onEndpointGone: (endpoint: string) => invoker.drop(endpoint),
  };
  if (server.backend === 'kubernetes') {
    // Loaded only when used: the Kubernetes client is large, and the local backend needs none of it.
    const { createKubernetesBackend } = await import('./backends/kubernetes.js');
    const k = config.raw.kubernetes;
    return createKubernetesBackend({
      ...shared,
      // In a cluster the pod-manager serves its own namespace (set from the downward API), where its Role is.
      namespace: config.env.namespace || k.namespace,
      kubeconfig: k.kubeconfig ? resolve(config.baseDir, k.kubeconfig) : undefined,
      requestTimeoutMs: k.request_timeout_ms,
      watchRenewMs: k.watch_renew_s * 1000,
      moduleImage: k.module_image,
      pythonModuleImage: k.python_module_image,
      pythonIndexUrl: server.python_index_url,
      imagePullPolicy: k.image_pull_policy,
      podLabels: k.pod_labels,
      nodeSelector: k.node_selector,
    });
  }
  return createLocalBackend({
    ...shared,
    cacheDir: server.cache_dir,
    isolate: server.isolate_modules,
    maxServers: server.max_module_servers,
    python: server.python,
    pythonIndexUrl: server.python_index_url,
  });
}

/**
 * JSON bodies are parsed as Fastify does (prototype poisoning refused), then refused past the one
 * depth limit of every decoded value: a body nested 10 000 deep must be a 400, not a stack overflow
 * wherever it is used next.
 */
function parseJsonWithDepthLimit(app: FastifyInstance): void {
  // `__proto__` and `constructor.prototype` keys are dropped, as secure-json-parse does: no body
  // key can be one, and a body that holds one is otherwise as valid as its schema says.
  const parse = app.getDefaultJsonParser('remove', 'remove');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parse(request, body as string, (error: Error | null, value?: unknown) => {
      if (error) return done(error, undefined);
      try {
        checkDepth(value);
      } catch (tooDeep) {
        return done(new ServiceError('BAD_REQUEST', (tooDeep as Error).message), undefined);
      }
      done(null, value);
    });
  });
}

/**
 * What the route schemas cannot say, said in the document: raw bodies (a msgpack program) are
 * Buffers, which no JSON Schema type validates, so their routes declare no type and the document
 * says `type: string, format: binary`; and a body that may be left out (a bare POST to load) is
 * not required.
 */
/** The part of an OpenAPI operation finishDocument touches. */
interface DocumentedOperation {
  requestBody?: { required?: boolean; content?: Record<string, { schema?: object }> };
}

function finishDocument<T>(document: T): T {
  const paths = (document as { paths?: Record<string, Record<string, DocumentedOperation>> }).paths ?? {};
  for (const methods of Object.values(paths)) {
    for (const operation of Object.values(methods)) {
      const content = operation?.requestBody?.content ?? {};
      for (const type of Rest.MSGPACK_TYPES) {
        if (content[type])
          content[type].schema = { ...content[type].schema, type: 'string', format: 'binary' };
      }
    }
  }
  const load = paths['/modules/{name}/load']?.post;
  if (load?.requestBody) load.requestBody.required = false;
  return document;
}

/** Compares a header with the expected secret in constant time. */
function sameSecret(header: string | undefined, expected: Buffer): boolean {
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
