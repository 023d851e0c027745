/**
 * How the pod-manager reads a failed Kubernetes API request, in one place: its HTTP status, the
 * reason and message of the Status object the API server answered with, the answers callers expect
 * (404, 409, 422), and the service error every other failure becomes.
 *
 * Every failure maps to CLUSTER_ERROR: the pod-manager cannot fix any of them by itself, and the
 * caller needs the API server's own words to fix it. Two cases get a message of their own:
 * - 403: the pod-manager's Role lacks the permission; the fix is in k8s/role.yaml, which we name.
 * - no answer at all (refused, reset, timed out): the API server is unreachable, which no status says.
 */
import { ApiException } from '@kubernetes/client-node';
import { ServiceError } from '../errors.js';

/** A failed API request (or anything else thrown while making one), read once. */
export class KubeApiError {
  /** Reads what a request threw: an ApiException of client-node, an abort or timeout, anything else. */
  static from(error: unknown): KubeApiError {
    return new KubeApiError(error);
  }

  /** The HTTP status the API server answered with; undefined when no answer came. */
  readonly status: number | undefined;
  /** The Status object's reason (`NotFound`, `AlreadyExists`, `Invalid`, `Forbidden`, ...), if it had one. */
  readonly reason: string | undefined;
  /** The API server's own message, else the error's. */
  readonly message: string;
  /** What was thrown. */
  readonly cause: unknown;

  private constructor(error: unknown) {
    this.cause = error;
    if (error instanceof ApiException) {
      const body = typeof error.body === 'string' ? safeJson(error.body) : error.body;
      const { message, reason } = (body ?? {}) as { message?: unknown; reason?: unknown };
      this.status = error.code;
      this.reason = typeof reason === 'string' ? reason : undefined;
      this.message = typeof message === 'string' ? message : `HTTP ${error.code}`;
    } else if (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError')) {
      this.message = 'no answer from the API server in time';
    } else {
      this.message = error instanceof Error ? error.message : String(error);
    }
  }

  /** 404: the object does not exist (read, patch or delete of something gone). */
  get notFound(): boolean {
    return this.status === 404;
  }

  /** 409: a create found the name taken (AlreadyExists), or an update lost a race (Conflict). */
  get conflict(): boolean {
    return this.status === 409;
  }

  /** 422: the object is invalid, or a JSON patch's `test` operation failed. */
  get invalid(): boolean {
    return this.status === 422;
  }

  /** The service error for this failure of a request made to do `what` ("read Deployment x"). */
  toServiceError(what: string): ServiceError {
    if (this.cause instanceof ServiceError) return this.cause;
    const why =
      this.status === 403
        ? `forbidden (the pod-manager's service account lacks this permission; see k8s/role.yaml): ${this.message}`
        : this.status === undefined
          ? `the Kubernetes API server is unreachable: ${this.message}`
          : `${this.message} (HTTP ${this.status})`;
    return new ServiceError('CLUSTER_ERROR', `cannot ${what}: ${why}`, { cause: this.cause });
  }
}

/**
 * Awaits an API request made to do `what`. An answer with the status `expected` (404 for a read or
 * delete of what may be gone, 409 for a create of what may exist) resolves undefined (a request
 * that succeeds resolves with an object); any other failure rejects with its service error.
 */
export function kubeRequest<T>(what: string, request: Promise<T>): Promise<T>;
export function kubeRequest<T>(
  what: string,
  request: Promise<T>,
  expected: 404 | 409,
): Promise<T | undefined>;
export async function kubeRequest<T>(
  what: string,
  request: Promise<T>,
  expected?: 404 | 409,
): Promise<T | undefined> {
  try {
    return await request;
  } catch (error) {
    const failure = KubeApiError.from(error);
    if (expected !== undefined && failure.status === expected) return undefined;
    throw failure.toServiceError(what);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}
