import { Code, isCode } from './status.js';

/**
 * The one error class of the splice-orc wire layer. Its `code` is a gRPC status name from a closed
 * set, so callers can branch on it; `details` carries structured context (a module name, a limit).
 */
export class SpliceError extends Error {
  override name = 'SpliceError';
  /** Why the operation failed, as a gRPC status name. */
  readonly code: Code;
  /** Structured, JSON-safe context about the failure. */
  readonly details: Readonly<Record<string, unknown>>;
  /**
   * True when the request is known not to have reached the module (no connection, a refused
   * stream, a pod-manager that is shutting down or has no room to queue it): sending it again runs
   * it at most once. False when it may have run.
   */
  readonly safeToResend: boolean;

  constructor(
    code: Code,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown>; safeToResend?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = Object.freeze({ ...options.details });
    this.safeToResend = options.safeToResend ?? false;
  }

  /**
   * Wraps anything thrown into a SpliceError, keeping an existing one as it is. An object that
   * carries a known `code` keeps it; everything else becomes `fallback` (UNKNOWN by default).
   */
  static from(reason: unknown, fallback: Code = Code.UNKNOWN): SpliceError {
    if (reason instanceof SpliceError) return reason;
    if (reason instanceof Error) {
      const code = (reason as { code?: unknown }).code;
      return new SpliceError(isCode(code) ? code : fallback, reason.message, { cause: reason });
    }
    return new SpliceError(fallback, String(reason), { cause: reason });
  }
}
