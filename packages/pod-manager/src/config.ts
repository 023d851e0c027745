/**
 * The pod-manager's configuration: `config/config.json`, in the shape of jac-splice-orc's file
 * (`kubernetes`, `module_config`, `environment`) so that one written for it loads, plus new keys in
 * the same snake_case style. Validated once at start-up; every problem is reported at once with its
 * JSON path; the result is frozen.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Static } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import npa from 'npm-package-arg';
import { ConfigSchema, ModuleConfig } from './config-schema.js';

/**
 * The environment variables the pod-manager and its CLI read, read here and nowhere else (a
 * module-server's are in the module-server package; what children may see is isolation.ts's
 * allow-list).
 */
export interface Environment {
  /** LOG_LEVEL: pino's level. Default info. */
  logLevel: string;
  /** SPLICE_LOG_REQUESTS=1: log every request (off: two lines per invocation cost more than it). */
  logRequests: boolean;
  /** SPLICE_AUTH_TOKEN: the bearer token when the config file has none. */
  authToken: string | undefined;
  /** SPLICE_NAMESPACE: the namespace a pod-manager in a cluster serves (the downward API sets it). */
  namespace: string | undefined;
  /** SPLICE_CONFIG: the config file of `splice-orc serve`. Default config/config.json. */
  configPath: string;
  /** POD_MANAGER_URL: the pod-manager the CLI's remote commands talk to. */
  podManagerUrl: string;
  /** XDG_CACHE_HOME: where the default cache folder is. Default ~/.cache. */
  cacheHome: string;
}

/** Reads the environment (default: this process's). */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  return {
    logLevel: env.LOG_LEVEL || 'info',
    logRequests: env.SPLICE_LOG_REQUESTS === '1',
    authToken: env.SPLICE_AUTH_TOKEN || undefined,
    namespace: env.SPLICE_NAMESPACE || undefined,
    configPath: env.SPLICE_CONFIG || 'config/config.json',
    podManagerUrl: env.POD_MANAGER_URL || 'http://127.0.0.1:8000',
    cacheHome: env.XDG_CACHE_HOME || join(homedir(), '.cache'),
  };
}

/** Shortest bearer token accepted, from the config file or SPLICE_AUTH_TOKEN. */
export const MIN_TOKEN_LENGTH = 16;

/** The raw, validated config as written (with defaults filled in). */
export type RawConfig = Static<typeof ConfigSchema>;

/** One configured module, resolved for the backends. */
export interface ModuleSpec {
  /** Name in the config and import specifier. */
  readonly name: string;
  /** npm spec to install; `file:` specs are absolute. */
  readonly package: string;
  readonly dependencies: readonly string[];
  readonly loadType: 'remote' | 'local' | 'auto';
  /** What serves the module: the Node or the Python module-server. */
  readonly runtime: 'node' | 'python';
  readonly cpu: string | undefined;
  readonly memory: string | undefined;
  /** ms without calls and references before the module is stopped; 0 = never. */
  readonly idleTimeoutMs: number;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly targetConcurrency: number;
  /** Started at start-up and restarted whenever it dies. */
  readonly keepWarm: boolean;
  /** Kubernetes CPU limit (quantity), set only where configured. */
  readonly cpuLimit: string | undefined;
  /** Kubernetes memory limit of the module's server (quantity). */
  readonly memoryLimit: string;
  /** Kubernetes memory limit of the install init container (quantity). */
  readonly installMemoryLimit: string;
  /** Kubernetes sizeLimit of each install volume (quantity). */
  readonly installSizeLimit: string;
  /** A prebuilt image holding the module (Kubernetes), else undefined: installed at pod start. */
  readonly image: string | undefined;
  /** Module code may compile strings (eval, new Function). */
  readonly codeGeneration: boolean;
  /** npm runs the install scripts of the module and its dependencies. */
  readonly installScripts: boolean;
}

/** The pod-manager's validated, frozen configuration. */
export interface Config {
  readonly raw: RawConfig;
  /** Folder `file:` specs are relative to (the config file's). */
  readonly baseDir: string;
  readonly server: RawConfig['server'] & {
    cache_dir: string;
    state_file: string;
    auth_token: string | undefined;
  };

  readonly modules: ReadonlyMap<string, ModuleSpec>;
  /** Batch jobs' limits and their database file (absolute). */
  readonly jobs: RawConfig['jobs'] & { database: string };
  /** The environment read when the config was. */
  readonly env: Environment;
}

/** Raised for a config that does not validate; `problems` lists each with its JSON path. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
// Compiled on first use: the CLI imports this file for its environment and must start fast.
let validateConfig: ValidateFunction<RawConfig> | undefined;
let validateModuleConfig: ValidateFunction<RawModuleConfig> | undefined;

/** Reads and validates a config file. `file:` package specs resolve against its folder. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(path, [`cannot read the file: ${(cause as Error).message}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(path, [`not valid JSON: ${(cause as Error).message}`]);
  }
  return parseConfig(json, { source: path, baseDir: dirname(resolve(path)) });
}

/** Validates a config object (defaults are filled into a copy). */
export function parseConfig(input: unknown, options: { source?: string; baseDir?: string } = {}): Config {
  const source = options.source ?? '(inline)';
  const env = readEnvironment();
  const raw = structuredClone(input);
  validateConfig ??= ajv.compile<RawConfig>(ConfigSchema);
  if (!validateConfig(raw)) throw new ConfigError(source, (validateConfig.errors ?? []).map(describeProblem));
  const baseDir = options.baseDir ?? process.cwd();
  const modules = new Map<string, ModuleSpec>();
  for (const [name, m] of Object.entries(raw.module_config)) modules.set(name, specFrom(name, m, baseDir));
  const cacheDir = raw.server.cache_dir
    ? resolve(baseDir, raw.server.cache_dir)
    : join(env.cacheHome, 'splice-orc');
  // One state file per config file by default, so pod-managers sharing a cache keep their own.
  const stateFile = raw.server.state_file
    ? resolve(baseDir, raw.server.state_file)
    : join(
        cacheDir,
        `state-${createHash('sha256')
          .update(options.source ? resolve(options.source) : baseDir)
          .digest('hex')
          .slice(0, 12)}.json`,
      );
  const authToken = raw.server.auth_token ?? env.authToken;
  // The schema checks the file's token; one from the environment must be as long.
  if (authToken !== undefined && authToken.length < MIN_TOKEN_LENGTH) {
    throw new ConfigError(source, [
      `SPLICE_AUTH_TOKEN: the token has ${authToken.length} characters; at least ${MIN_TOKEN_LENGTH} are needed`,
    ]);
  }
  // The jobs database lives in the state directory, beside the state file it belongs with.
  const database = raw.jobs.database
    ? resolve(baseDir, raw.jobs.database)
    : join(dirname(stateFile), `${basename(stateFile).replace(/\.json$/, '')}.jobs.sqlite`);
  return deepFreeze({
    raw,
    baseDir,
    server: { ...raw.server, cache_dir: cacheDir, state_file: stateFile, auth_token: authToken },
    modules,
    jobs: { ...raw.jobs, database },
    env,
  });
}

/** One module's raw config, as in module_config. */
export type RawModuleConfig = Static<typeof ModuleConfig>;

/**
 * Validates one module's config as the file would be (for `PUT /modules/:name/config`); the
 * problems carry paths below `/module_config/<name>`.
 */
export function parseModuleConfig(
  name: string,
  input: unknown,
  baseDir: string,
): { raw: RawModuleConfig; spec: ModuleSpec } {
  const raw = structuredClone(input);
  validateModuleConfig ??= ajv.compile<RawModuleConfig>(ModuleConfig);
  const validateModule = validateModuleConfig;
  if (!validateModule(raw)) {
    const problems = (validateModule.errors ?? []).map((e) =>
      describeProblem({ ...e, instancePath: `/module_config/${name}${e.instancePath}` }),
    );
    throw new ConfigError(`module_config/${name}`, problems);
  }
  return { raw, spec: specFrom(name, raw, baseDir) };
}

/** True when what is installed for a module differs between two specs (a reinstall is needed). */
export function installChanged(next: ModuleSpec, previous: ModuleSpec): boolean {
  return (
    next.runtime !== previous.runtime ||
    next.package !== previous.package ||
    next.dependencies.join('\n') !== previous.dependencies.join('\n') ||
    next.installScripts !== previous.installScripts
  );
}

function specFrom(name: string, m: RawModuleConfig, baseDir: string): ModuleSpec {
  return Object.freeze({
    name,
    package: resolveFor(m.runtime)(m.package ?? name, baseDir),
    dependencies: Object.freeze(m.dependency.map((d) => resolveFor(m.runtime)(d, baseDir))),
    loadType: m.load_type,
    runtime: m.runtime,
    cpu: m.lib_cpu_req,
    memory: m.lib_mem_size_req,
    idleTimeoutMs: m.idle_timeout_s * 1000,
    minReplicas: m.min_replicas,
    maxReplicas: Math.max(m.max_replicas, m.min_replicas),
    targetConcurrency: m.target_concurrency,
    keepWarm: m.keep_warm || m.min_replicas > 0,
    cpuLimit: m.lib_cpu_limit,
    memoryLimit: m.lib_mem_limit,
    installMemoryLimit: m.install_mem_limit,
    installSizeLimit: m.install_size_limit,
    image: m.image,
    codeGeneration: m.allow_code_generation,
    installScripts: m.install_scripts,
  });
}

function resolveFor(runtime: 'node' | 'python'): (spec: string, baseDir: string) => string {
  return runtime === 'python' ? resolveRequirement : resolveSpec;
}

/**
 * A pip requirement as pip will install it: a local path (`./x`, `../wheels/x.whl`, `/abs/x`,
 * `file:x`) becomes absolute (pip installs from the virtual environment's folder); names, versions,
 * URLs and `git+` specs are kept as they are.
 */
function resolveRequirement(spec: string, baseDir: string): string {
  const path = spec.startsWith('file:') && !spec.startsWith('file://') ? spec.slice('file:'.length) : spec;
  return /^(\.{1,2}\/|\/)/.test(path) ? resolve(baseDir, path) : spec;
}

/** A spec as npm will install it: folders and tarballs (`file:x`, `./x`, `x.tgz`) become `file:<absolute path>`. */
function resolveSpec(spec: string, baseDir: string): string {
  let parsed: npa.Result;
  try {
    parsed = npa(spec, baseDir);
  } catch {
    return spec; // npm says what is wrong with it at install
  }
  const local = (parsed.type === 'file' || parsed.type === 'directory') && parsed.fetchSpec;
  return local ? `file:${parsed.fetchSpec}` : spec;
}

function describeProblem(e: ErrorObject): string {
  const at = e.instancePath || '/';
  if (e.keyword === 'additionalProperties' && at === '/module_config') {
    const name = (e.params as { additionalProperty: string }).additionalProperty;
    return `${at}: invalid module name '${name}' (must be an npm package name or import specifier)`;
  }
  if (e.keyword === 'pattern' && typeof e.parentSchema?.description === 'string') {
    return `${at}: '${String(e.data)}' is not a ${e.parentSchema.description}`;
  }
  if (e.keyword === 'additionalProperties') {
    return `${at}: unknown key '${(e.params as { additionalProperty: string }).additionalProperty}'`;
  }
  if (e.keyword === 'required')
    return `${at}: missing key '${(e.params as { missingProperty: string }).missingProperty}'`;
  if (e.keyword === 'enum') {
    return `${at}: must be one of ${(e.params as { allowedValues: string[] }).allowedValues.join(', ')}`;
  }
  return `${at}: ${e.message}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of value instanceof Map ? value.values() : Object.values(value)) deepFreeze(v);
  }
  return value;
}
