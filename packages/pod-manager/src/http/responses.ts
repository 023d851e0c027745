/**
 * The responses of each route for the OpenAPI document: the success answer and every error status
 * the route can answer, each with the one error body and the codes it may carry (from the error
 * table, and the gRPC statuses a module-server reports, for invocations).
 */

import type { TSchema } from '@sinclair/typebox';
import { Code, httpStatusFromCode, Rest } from '@splice-orc/protocol';
import { errorTable } from '../errors.js';

/** Every route that takes the token: 401 without it, 503 while shutting down, 500 for a bug. */
export const ALWAYS = [401, 500, 503] as const;
/** Routes with a `:name` parameter: a bad URL, an unknown module, a name past the length limit. */
export const NAMED = [400, 404, 414] as const;
/** Routes with a JSON body: malformed, too large, of another content type. */
export const WITH_BODY = [400, 413, 415] as const;
/** Control routes (CONTROL_ROUTE): past server.control_rate_limit_per_minute, 429 RATE_LIMITED. */
export const CONTROL = [429] as const;
/**
 * The route config of a control route: one that starts or stops work (load, unload, config,
 * policy, jobs). Each client address may make server.control_rate_limit_per_minute of them.
 */
export const CONTROL_ROUTE = { control: true } as const;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered without the token (health, the API document). */
    public?: boolean;
    /** A control route: counted against server.control_rate_limit_per_minute. */
    control?: boolean;
  }
}

function codesWith(status: number, forwarded: boolean): string[] {
  const own = Object.entries(errorTable)
    .filter(([, spec]) => spec.status === status)
    .map(([code]) => code);
  const grpc = forwarded ? Object.values(Code).filter((c) => httpStatusFromCode(c) === status) : [];
  return [...new Set([...own, ...grpc])];
}

/**
 * The `response` schema of a route: `ok` for 200 (a schema, or per content type), then the error
 * body for each status in `statuses`. `forwarded`: the route forwards module-server failures,
 * which keep their gRPC status name as code.
 */
export function responses(
  ok: TSchema | { description: string; content: Record<string, { schema: object }> },
  statuses: readonly number[],
  options: { forwarded?: boolean; okDescription?: string } = {},
): Record<number, unknown> {
  const out: Record<number, unknown> = {
    200: 'content' in ok ? ok : { description: options.okDescription ?? 'Success', ...ok },
  };
  for (const status of [...new Set(statuses)].sort()) {
    const codes = codesWith(status, options.forwarded ?? false);
    out[status] = { description: `Error: ${codes.join(', ') || 'see the error table'}`, ...Rest.ErrorBody };
  }
  return out;
}
