/**
 * The closed set of error codes used on every side of splice-orc: the gRPC status names, so that a
 * failure keeps one name from the module-server through the pod-manager to the client.
 */
export const Code = {
  CANCELLED: 'CANCELLED',
  UNKNOWN: 'UNKNOWN',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  ABORTED: 'ABORTED',
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  UNIMPLEMENTED: 'UNIMPLEMENTED',
  INTERNAL: 'INTERNAL',
  UNAVAILABLE: 'UNAVAILABLE',
  DATA_LOSS: 'DATA_LOSS',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
} as const;

/** One of the gRPC status names. */
export type Code = (typeof Code)[keyof typeof Code];

/** gRPC numeric status for each code, in the order of the gRPC specification. */
const grpcNumbers: Record<Code, number> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

const codesByNumber = new Map<number, Code>(
  Object.entries(grpcNumbers).map(([code, n]) => [n, code as Code]),
);

/**
 * HTTP status for each code, as the pod-manager answers it: the gRPC-HTTP mapping used by Google
 * APIs and connect-es. RESOURCE_EXHAUSTED is 429 (a limit was reached: references, sessions, a
 * result over the size limit); a request body over the limit is the pod-manager's own 413.
 */
const httpStatuses: Record<Code, number> = {
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 412,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
};

/** The gRPC numeric status of a code. */
export function grpcStatusFromCode(code: Code): number {
  return grpcNumbers[code];
}

/** The code of a gRPC numeric status; UNKNOWN for a number outside the specification. */
export function codeFromGrpcStatus(status: number): Code {
  return codesByNumber.get(status) ?? Code.UNKNOWN;
}

/** The HTTP status the pod-manager answers for a code. */
export function httpStatusFromCode(code: Code): number {
  return httpStatuses[code];
}

/** True when `value` is one of the codes. */
export function isCode(value: unknown): value is Code {
  return typeof value === 'string' && Object.hasOwn(grpcNumbers, value);
}
