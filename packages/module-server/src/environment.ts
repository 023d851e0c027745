/**
 * A module-server's start-up environment, defined once: the variables whoever starts a server sets
 * (the pod-manager's local backend, a module pod, `docker run`) and how the server reads them.
 *
 * | variable | meaning | default |
 * | --- | --- | --- |
 * | MODULE_NAME | module specifier to serve | required |
 * | MODULE_RESOLVE_FROM | directory whose node_modules holds it | this package's location |
 * | HOST | address to bind | 127.0.0.1 |
 * | PORT | port to bind, 0 = any free port | 50051 |
 * | CALLBACK_PORT | port of the callback endpoint (served by a thread of its own), 0 = any free port | PORT + 1, or 0 when PORT is 0 |
 * | SPLICE_CALLBACK_TIMEOUT_MS | longest one callback invocation waits for the app's answer | 30000 |
 * | SPLICE_SERVER_SECRET | credential every Invoke and Stats must carry (16+ characters) | required, unless given over IPC |
 * | SPLICE_SECRET_FROM_PARENT | `1`: the secret arrives as the first IPC message, never in the environment | unset |
 * | SPLICE_MAX_MESSAGE_BYTES | largest payload either way | 16777216 |
 * | SPLICE_LEASE_MS | session lease | 60000 |
 * | SPLICE_GRACE_MS | how long in-flight calls may finish on SIGTERM | 5000 |
 * | SPLICE_SERVER_ID | id references carry (in a pod: the pod name) | random |
 * | SPLICE_MAX_OBJECTS_PER_SESSION | remote references one session may hold | 100000 |
 * | SPLICE_MAX_OBJECTS | remote references all sessions may hold | 250000 |
 * | SPLICE_MAX_SESSIONS | live client sessions | 10000 |
 * | SPLICE_CODE_GENERATION | `allow`: module code may compile strings (`eval`, `new Function`) | disallowed |
 */

/** What a server is started with. */
export interface ServerEnvironment {
  moduleName: string;
  resolveFrom?: string | undefined;
  host: string;
  port: number;
  callbackPort: number;
  callbackTimeoutMs: number;
  /** Undefined when it comes over IPC (`secretFromParent`). */
  secret?: string | undefined;
  secretFromParent: boolean;
  maxMessageBytes: number;
  leaseMs: number;
  graceMs: number;
  serverId?: string | undefined;
  limits: { maxObjectsPerSession: number; maxObjects: number; maxSessions: number };
  /** Module code may compile code from strings (off by default). */
  codeGeneration: boolean;
}

/** The settings of {@link environmentFor}: what a starter chooses; the rest takes defaults. */
export type ServerSettings = Partial<Omit<ServerEnvironment, 'limits'>> &
  Pick<ServerEnvironment, 'moduleName'> & { limits?: Partial<ServerEnvironment['limits']> };

/** Node's flag that keeps module code from compiling strings; set unless `codeGeneration`. */
export const NO_CODE_GENERATION_FLAG = '--disallow-code-generation-from-strings';

/** The environment variables for a server with these settings (the secret only if given). */
export function environmentFor(settings: ServerSettings): Record<string, string> {
  const env: Record<string, string | number | undefined> = {
    MODULE_NAME: settings.moduleName,
    MODULE_RESOLVE_FROM: settings.resolveFrom,
    HOST: settings.host,
    PORT: settings.port,
    CALLBACK_PORT: settings.callbackPort,
    SPLICE_CALLBACK_TIMEOUT_MS: settings.callbackTimeoutMs,
    SPLICE_SERVER_SECRET: settings.secret,
    SPLICE_SECRET_FROM_PARENT: settings.secretFromParent ? '1' : undefined,
    SPLICE_MAX_MESSAGE_BYTES: settings.maxMessageBytes,
    SPLICE_LEASE_MS: settings.leaseMs,
    SPLICE_GRACE_MS: settings.graceMs,
    SPLICE_SERVER_ID: settings.serverId,
    SPLICE_MAX_OBJECTS_PER_SESSION: settings.limits?.maxObjectsPerSession,
    SPLICE_MAX_OBJECTS: settings.limits?.maxObjects,
    SPLICE_MAX_SESSIONS: settings.limits?.maxSessions,
    SPLICE_CODE_GENERATION: settings.codeGeneration ? 'allow' : undefined,
  };
  return Object.fromEntries(
    Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])),
  );
}

/** Reads a server's environment; throws an Error naming the first bad variable. */
export function parseEnvironment(env: NodeJS.ProcessEnv): ServerEnvironment {
  const moduleName = env.MODULE_NAME;
  if (!moduleName) throw new Error('MODULE_NAME is not set: name the module this server should serve');
  const secretFromParent = env.SPLICE_SECRET_FROM_PARENT === '1';
  const secret = env.SPLICE_SERVER_SECRET || undefined;
  if (!secret && !secretFromParent) {
    throw new Error(
      'SPLICE_SERVER_SECRET is not set: give the server a secret of 16+ characters; only callers that send it (the pod-manager) may call the module',
    );
  }
  const codeGeneration = env.SPLICE_CODE_GENERATION ?? '';
  if (codeGeneration !== '' && codeGeneration !== 'allow') {
    throw new Error(`SPLICE_CODE_GENERATION must be 'allow' or unset, got '${codeGeneration}'`);
  }
  const port = int(env, 'PORT', 50051);
  return {
    moduleName,
    resolveFrom: env.MODULE_RESOLVE_FROM || undefined,
    host: env.HOST || '127.0.0.1',
    port,
    callbackPort: int(env, 'CALLBACK_PORT', port === 0 ? 0 : port + 1),
    callbackTimeoutMs: int(env, 'SPLICE_CALLBACK_TIMEOUT_MS', 30_000),
    secret,
    secretFromParent,
    maxMessageBytes: int(env, 'SPLICE_MAX_MESSAGE_BYTES', 16 * 1024 * 1024),
    leaseMs: int(env, 'SPLICE_LEASE_MS', 60_000),
    graceMs: int(env, 'SPLICE_GRACE_MS', 5_000),
    serverId: env.SPLICE_SERVER_ID || undefined,
    limits: {
      maxObjectsPerSession: int(env, 'SPLICE_MAX_OBJECTS_PER_SESSION', 100_000),
      maxObjects: int(env, 'SPLICE_MAX_OBJECTS', 250_000),
      maxSessions: int(env, 'SPLICE_MAX_SESSIONS', 10_000),
    },
    codeGeneration: codeGeneration === 'allow',
  };
}

/** True when this process cannot compile strings (it was started with the flag). */
export function codeGenerationDisallowed(): boolean {
  try {
    new Function('');
    return false;
  } catch {
    return true;
  }
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got '${raw}'`);
  }
  return value;
}
