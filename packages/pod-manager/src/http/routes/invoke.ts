/**
 * `POST /modules/:name/invoke`: msgpack bytes are forwarded to the module-server as they are; a
 * JSON body (one operation, for curl) is turned into a program here and its answer into JSON.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import {
  BATCH_TYPE,
  countBatchPrograms,
  decode,
  encode,
  frameMessage,
  type InvokeResponse,
  PROGRAM_VERSION,
  type RemoteRef,
  Rest,
  trailerFrame,
} from '@splice-orc/protocol';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ServiceError, serviceErrorFrom } from '../../errors.js';
import type { ForwardOptions, ModuleRegistry } from '../../orchestration/registry.js';
import type { PlacementEngine } from '../../placement/engine.js';
import { errorJson, jsonFromValue, programFromJson } from '../json-invoke.js';
import { ALWAYS, NAMED, responses, WITH_BODY } from '../responses.js';

const { Headers, MSGPACK_TYPE, MSGPACK_TYPES, JsonInvokeBody } = Rest;

/** What an invocation answers: a msgpack program's outcome, or one JSON operation's value. */
const InvokeAnswer = {
  description: 'The outcome: msgpack for a msgpack program, {"value": ...} for a JSON operation',
  content: {
    'application/json': { schema: Rest.JsonInvokeAnswer },
    [MSGPACK_TYPE]: { schema: { type: 'string', format: 'binary' } },
    [BATCH_TYPE]: {
      schema: {
        type: 'string',
        format: 'binary',
        description:
          'a batch: frames (flag byte, 4-byte length, body), each InvokeBatchAnswer as it is ready, then a trailer frame (flag 0x80) holding {"ok": true} or {"ok": false, "error": {...}}',
      },
    },
  },
};

/** The module a route names, and the shorter deadline a caller may ask for: shared by both routes. */
const ModuleParams = T.Object({ name: T.String({ maxLength: 256 }) });
const TimeoutHeader = T.Optional(
  T.String({ pattern: '^[1-9][0-9]{0,9}$', description: 'a shorter deadline, ms' }),
);

/**
 * The session of JSON invocations. JSON callers cannot hold references (what a call makes is
 * released at once), so one session per pod-manager serves them all instead of one per request.
 */
const JSON_SESSION = `json-${randomUUID()}`;

interface InvokeRouteOptions {
  registry: ModuleRegistry;
  placement: PlacementEngine;
  maxTimeoutMs: number;
}

export function invokeRoutes(
  app: FastifyInstance,
  { registry, placement, maxTimeoutMs }: InvokeRouteOptions,
): void {
  app.addContentTypeParser([...MSGPACK_TYPES, BATCH_TYPE], { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );
  // Only msgpack and JSON are invocations: anything else is a 415, not a string to misread.
  app.removeContentTypeParser('text/plain');

  app.post<{ Params: { name: string } }>(
    '/modules/:name/invoke',
    {
      schema: {
        tags: ['invoke'],
        summary: 'Run an invocation (msgpack program, or one JSON operation)',
        params: ModuleParams,
        headers: T.Object({
          [Headers.timeout]: TimeoutHeader,
          [Headers.route]: T.Optional(
            T.String({ description: 'the replica holding the references the call uses' }),
          ),
          [Headers.ifRemote]: T.Optional(
            T.Literal('1', {
              description: "run the call only if the module's calls run remotely, else 409 PLACED_LOCAL",
            }),
          ),
        }),
        body: {
          content: {
            'application/json': { schema: JsonInvokeBody },
            // A Buffer: no type here (Ajv has none for bytes); the document says binary (app.ts).
            [MSGPACK_TYPE]: {
              schema: { description: 'a msgpack-encoded invocation program (the client sends it)' },
            },
            [BATCH_TYPE]: {
              schema: { description: 'an InvokeBatchRequest message: several programs (auto-batching)' },
            },
          },
        },
        response: responses(
          InvokeAnswer,
          [...ALWAYS, ...NAMED, ...WITH_BODY, 403, 409, 412, 422, 429, 501, 502, 504],
          { forwarded: true },
        ),
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      registry.spec(name);
      const timeoutMs = timeoutFrom(request.headers[Headers.timeout], maxTimeoutMs);
      const where = placement.decision(name).placement;
      reply.header(Headers.placement, where);
      if (where === 'local' && request.headers[Headers.ifRemote] !== undefined) {
        throw new ServiceError('PLACED_LOCAL', `${name} runs in the client's process: nothing ran here`);
      }
      const signal = abortOnDisconnect(reply);
      if (Buffer.isBuffer(request.body)) {
        const options = { timeoutMs, signal, route: routeFrom(request.headers[Headers.route]) };
        if (request.headers['content-type'] === BATCH_TYPE) {
          return forwardBatch(registry, name, request.body, options, reply);
        }
        const result = await registry.forward(name, request.body, options);

        if (result.coldStartMs !== undefined) reply.header(Headers.coldStart, result.coldStartMs);
        return reply.type(MSGPACK_TYPE).send(result.payload);
      }
      const body = checkJsonBody(request.body);
      const session = JSON_SESSION;
      const result = await registry.forward(name, encode(programFromJson(body, session)), {
        timeoutMs,
        signal,
      });
      if (result.coldStartMs !== undefined) reply.header(Headers.coldStart, result.coldStartMs);
      const response = decode(result.payload) as InvokeResponse;
      if (!response.ok) {
        throw new ServiceError('REMOTE_ERROR', `${response.error.name}: ${response.error.message}`, {
          extra: { remote: errorJson(response.error) },
        });
      }
      const refs: RemoteRef[] = [];
      const value = jsonFromValue(response.value, refs);
      if (refs.length > 0) releaseLater(registry, name, session, refs);
      return { value };
    },
  );
  app.post<{ Params: { name: string } }>(
    '/modules/:name/callbacks',
    {
      schema: {
        tags: ['invoke'],
        summary: "Collect the module's callback requests and send the app's answers (INVOKE.md 3.7)",
        description:
          'A msgpack `callbacks` program, forwarded unread to the callback endpoint of the replica the route header names; the answer holds the requests that were waiting, or none after the wait.',
        params: ModuleParams,
        headers: T.Object({
          [Headers.timeout]: TimeoutHeader,
          [Headers.route]: T.Optional(
            T.String({ description: 'the replica whose callbacks these are (any when absent)' }),
          ),
        }),
        body: {
          content: {
            [MSGPACK_TYPE]: { schema: { description: 'a msgpack-encoded callbacks program' } },
          },
        },
        response: responses(
          {
            description: 'The outcome (msgpack)',
            content: { [MSGPACK_TYPE]: { schema: { type: 'string', format: 'binary' } } },
          },
          [...ALWAYS, ...NAMED, ...WITH_BODY, 422, 429, 502, 504],
          { forwarded: true },
        ),
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      registry.spec(name);
      if (!Buffer.isBuffer(request.body)) {
        throw new ServiceError('UNSUPPORTED_MEDIA_TYPE', `callbacks take a msgpack body (${MSGPACK_TYPE})`);
      }
      const payload = await registry.forwardCallbacks(name, request.body, {
        timeoutMs: timeoutFrom(request.headers[Headers.timeout], maxTimeoutMs),
        signal: abortOnDisconnect(reply),
        route: routeFrom(request.headers[Headers.route]),
      });
      return reply.type(MSGPACK_TYPE).send(payload);
    },
  );
}

/**
 * Forwards a batch and streams its answers back as they come (batch.ts in the protocol package).
 * A failure before the first answer is a normal error answer; after it, the trailer frame says it.
 */
async function forwardBatch(
  registry: ModuleRegistry,
  name: string,
  body: Buffer,
  options: ForwardOptions,
  reply: FastifyReply,
): Promise<FastifyReply> {
  let count: number;
  try {
    count = countBatchPrograms(body);
  } catch (error) {
    throw new ServiceError('BAD_REQUEST', (error as Error).message);
  }
  const out = new PassThrough();
  let started = false;
  // Answers that arrive together (one read from the module-server) leave together: one write.
  let ready: Buffer[] = [];
  const flush = () => {
    if (ready.length > 0) out.write(ready.length === 1 ? ready[0] : Buffer.concat(ready));
    ready = [];
  };
  const begun = new Promise<number | undefined>((resolve, reject) => {
    registry
      .forwardBatch(name, body, count, options, (answer) => {
        started = true;
        resolve(undefined);
        if (ready.length === 0) process.nextTick(flush);
        ready.push(frameMessage(answer.message));
      })
      .then(
        ({ coldStartMs }) => {
          resolve(coldStartMs);
          flush();
          out.end(trailerFrame({ ok: true }));
        },
        (error: unknown) => {
          if (!started) return reject(error);
          const { error: body } = serviceErrorFrom(error).toJSON() as {
            error: { code: string; status: string; message: string };
          };
          flush();
          out.end(trailerFrame({ ok: false, error: body }));
        },
      );
  });
  const coldStartMs = await begun;
  if (coldStartMs !== undefined) reply.header(Headers.coldStart, coldStartMs);
  return reply.type(BATCH_TYPE).send(out);
}

function checkJsonBody(body: unknown): Rest.JsonInvokeBody {
  if (Value.Check(JsonInvokeBody, body)) return body;
  const problems = [...Value.Errors(JsonInvokeBody, body)].map((e) => `${e.path || '/'}: ${e.message}`);
  throw new ServiceError(
    'BAD_REQUEST',
    `a JSON invocation is {"path": "a.b" | ["a","b"], "args"?: [...], "op"?: "get"|"call"|"new"}: ${problems.join('; ')}`,
  );
}

/** JSON callers cannot hold references: free what the call made at once. */
function releaseLater(registry: ModuleRegistry, name: string, session: string, refs: RemoteRef[]): void {
  const program = { v: PROGRAM_VERSION, session, ops: [{ op: 'release', ids: refs.map((r) => r.id) }] };
  registry.forward(name, encode(program), { timeoutMs: 5_000 }).catch(() => {
    // The lease frees them anyway.
  });
}

/** The replica the route header names, if it names one. */
function routeFrom(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && header ? header : undefined;
}

function timeoutFrom(header: string | string[] | undefined, max: number): number {
  if (header === undefined) return max;
  const ms = Number(header);
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new ServiceError(
      'BAD_REQUEST',
      `${Headers.timeout} must be a positive integer (ms), got '${String(header)}'`,
    );
  }
  return Math.min(ms, max);
}

/** Aborts the forwarded call when the HTTP client goes away before its answer. */
function abortOnDisconnect(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  });
  return controller.signal;
}
