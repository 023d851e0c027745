import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorTable, ServiceError } from './errors.js';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

describe('error table', () => {
  it('is documented row by row in the README', () => {
    const rows = readme
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .map((line) => line.split('|').map((cell) => cell.trim()));
    for (const [code, spec] of Object.entries(errorTable)) {
      expect(rows).toContainEqual(expect.arrayContaining([`\`${code}\``, String(spec.status), spec.grpc]));
    }
  });

  it('gives forwarded gRPC codes their HTTP status', () => {
    expect(new ServiceError('PERMISSION_DENIED', 'x').statusCode).toBe(403);
    expect(new ServiceError('DEADLINE_EXCEEDED', 'x').statusCode).toBe(504);
    expect(new ServiceError('MODULE_NOT_FOUND', 'x').toJSON()).toEqual({
      error: { code: 'MODULE_NOT_FOUND', status: 'NOT_FOUND', message: 'x' },
    });
  });
});
