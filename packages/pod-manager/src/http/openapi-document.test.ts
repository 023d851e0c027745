/**
 * The OpenAPI document is a contract: it must be valid OpenAPI 3.0.3 (checked by a real validator,
 * @apidevtools/swagger-parser) and document, for every route, each status the route can answer.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../app.js';
import { parseConfig } from '../config.js';

let app: Awaited<ReturnType<typeof buildApp>>;
let document: Record<string, any>;

beforeAll(async () => {
  app = await buildApp(
    parseConfig({ module_config: { calc: {} }, server: { state_file: '/tmp/splice-openapi-test.json' } }),
    {
      logger: false,
    },
  );
  await app.ready();
  document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
});
afterAll(async () => {
  await app.close();
});

const operations = () =>
  Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ path, method, op })),
  );

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.0.3', async () => {
    expect(document.openapi).toBe('3.0.3');
    await expect(SwaggerParser.validate(structuredClone(document) as never)).resolves.toBeDefined();
  });

  it('documents 401, 500 and 503 with the error schema on every route that takes the token', () => {
    for (const { path, method, op } of operations()) {
      if (path === '/healthz' || path === '/readyz') continue;
      for (const status of ['401', '500', '503']) {
        const response = op.responses?.[status];
        expect(response, `${method} ${path} ${status}`).toBeDefined();
        expect(response.content['application/json'].schema.properties.error.required).toEqual(
          expect.arrayContaining(['code', 'status', 'message']),
        );
      }
    }
  });

  it('documents a body schema for each route that takes one', () => {
    for (const [path, method] of [
      ['/modules/{name}/config', 'put'],
      ['/modules/{name}/load', 'post'],
      ['/modules/{name}/invoke', 'post'],
      ['/policy', 'put'],
      ['/stats', 'post'],
    ]) {
      const body = document.paths[path!][method!].requestBody;
      expect(body, `${method} ${path}`).toBeDefined();
      expect(Object.keys(body.content)).toContain('application/json');
    }
  });

  it('documents 404 and 414 on routes with a module name, and 413 and 415 on those with a body', () => {
    for (const { path, method, op } of operations()) {
      if (path.includes('{name}'))
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(
          expect.arrayContaining(['404', '414']),
        );
      if (op.requestBody)
        expect(Object.keys(op.responses), `${method} ${path}`).toEqual(
          expect.arrayContaining(['413', '415']),
        );
    }
  });
});
