/**
 * The container image's role dispatch (see entrypoint.ts): starts the pod-manager, a module-server
 * or a module install, as SERVICE_TYPE says.
 */

import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';

/** The values SERVICE_TYPE accepts. */
export const SERVICE_TYPES = ['pod_manager', 'module_service', 'module_install'] as const;

/** Default config path in the image (the ConfigMap of k8s/ is mounted there). */
const DEFAULT_CONFIG = '/etc/splice-orc/config.json';

/**
 * Runs the role `env.SERVICE_TYPE` names. Resolves with an exit code for roles that end (install,
 * errors); long-running roles resolve once started and keep the process alive.
 */
export async function dispatchEntrypoint(env: NodeJS.ProcessEnv): Promise<number> {
  const type = env.SERVICE_TYPE;
  switch (type) {
    case 'pod_manager':
      return startPodManagerRole(env);
    case 'module_service':
      return moduleServiceRole(env);
    case 'module_install':
      return installRole(env);
    default:
      return fail(
        `SERVICE_TYPE must be one of ${SERVICE_TYPES.join(', ')}; got ${type === undefined ? 'nothing' : `'${type}'`}`,
      );
  }
}

async function startPodManagerRole(env: NodeJS.ProcessEnv): Promise<number> {
  const [{ startPodManager }, { ConfigError }] = await Promise.all([
    import('./main.js'),
    import('./config.js'),
  ]);
  const port = env.PORT ? Number(env.PORT) : undefined;
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    return fail(`PORT must be a port number (0-65535); got '${env.PORT}'`);
  }
  try {
    const { url } = await startPodManager({
      configPath: env.SPLICE_CONFIG || DEFAULT_CONFIG,
      host: env.HOST || undefined,
      port,
    });
    process.stdout.write(`splice-orc pod-manager listening on ${url}\n`);
    return 0;
  } catch (error) {
    return fail(error instanceof ConfigError ? error.message : String(error));
  }
}

async function moduleServiceRole(env: NodeJS.ProcessEnv): Promise<number> {
  if (!env.MODULE_NAME) return fail('SERVICE_TYPE=module_service needs MODULE_NAME (the module to serve)');
  const { codeGenerationDisallowed, NO_CODE_GENERATION_FLAG } = await import(
    '@splice-orc/module-server/environment'
  );
  // Module pods set NODE_OPTIONS; a container started by hand gets the flag here.
  if (env.SPLICE_CODE_GENERATION !== 'allow' && !codeGenerationDisallowed()) {
    return runAgainWith([NO_CODE_GENERATION_FLAG]);
  }
  await import('@splice-orc/module-server/main');
  return 0;
}

/** Runs this entry point again with extra Node flags, passing signals on; resolves with its exit code. */
function runAgainWith(flags: string[]): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...flags, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
  });
}

async function installRole(env: NodeJS.ProcessEnv): Promise<number> {
  const { MODULE_NAME: name, MODULE_PACKAGE: pkg, MODULE_RESOLVE_FROM: dir } = env;
  if (!name || !dir) return fail('SERVICE_TYPE=module_install needs MODULE_NAME and MODULE_RESOLVE_FROM');
  let dependencies: string[];
  try {
    dependencies = JSON.parse(env.MODULE_DEPENDENCIES || '[]') as string[];
    if (!Array.isArray(dependencies) || !dependencies.every((d) => typeof d === 'string'))
      throw new Error('not a list');
  } catch {
    return fail(`MODULE_DEPENDENCIES must be a JSON list of npm specs; got '${env.MODULE_DEPENDENCIES}'`);
  }
  const { installModuleInto } = await import('./backends/installer.js');
  const timeoutMs = Number(env.SPLICE_INSTALL_TIMEOUT_MS) || 300_000;
  try {
    const spec = {
      name,
      package: pkg || name,
      dependencies,
      installScripts: env.MODULE_INSTALL_SCRIPTS === '1',
    };
    await installModuleInto(spec, dir, timeoutMs);
    process.stdout.write(`installed ${[spec.package, ...dependencies].join(' ')} into ${dir}\n`);
    // In a pod the npm cache is of no further use (the volume lives as long as the pod).
    if (env.SPLICE_INSTALL_DROP_CACHE === '1' && env.npm_config_cache) {
      // Best effort: a cache that cannot be removed does not undo a good install.
      await rm(env.npm_config_cache, { recursive: true, force: true }).catch(() => undefined);
    }
    return 0;
  } catch (error) {
    return fail((error as Error).message);
  }
}

function fail(message: string): number {
  process.stderr.write(`splice-orc: ${message}\n`);
  return 2;
}
