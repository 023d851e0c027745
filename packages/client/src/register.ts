/**
 * `node --import @splice-orc/client/register app.mjs`: asks the pod-manager at `POD_MANAGER_URL`
 * once, at start-up and within a deadline, which modules it serves remotely, then registers the
 * import hooks (import-hooks.ts) that turn the app's imports of those modules into remote proxies;
 * every other import is left as Node does it. A pod-manager that cannot be asked stops the app
 * with one line saying why, unless `SPLICE_IMPORT_FALLBACK=local` asks to import everything
 * locally instead (with a warning).
 */
import { register } from 'node:module';
import { type HookData, servedRemotely } from './import-startup.js';

const settings = process.env;
const url = settings.POD_MANAGER_URL;
const fallback = settings.SPLICE_IMPORT_FALLBACK === 'local';

function stop(message: string): never {
  process.stderr.write(`splice-orc: ${message}\n`);
  process.exit(1);
}

if (!url)
  stop(
    'POD_MANAGER_URL is not set: @splice-orc/client/register asks that pod-manager which imports go remote',
  );
let remote: string[] | undefined;
try {
  remote = await servedRemotely(url, {
    token: settings.SPLICE_AUTH_TOKEN || undefined,
    timeoutMs: Number(settings.SPLICE_IMPORT_TIMEOUT_MS) || 5_000,
  });
} catch (error) {
  const why = (error as Error).message;
  if (!fallback) stop(`${why} (SPLICE_IMPORT_FALLBACK=local imports every module locally instead)`);
  process.emitWarning(`${why}; importing every module locally (SPLICE_IMPORT_FALLBACK=local)`, {
    code: 'SPLICE_IMPORT_FALLBACK',
  });
}
if (remote) {
  const data: HookData = {
    url,
    token: settings.SPLICE_AUTH_TOKEN || undefined,
    remote,
    exportsTimeoutMs: Number(settings.SPLICE_IMPORT_EXPORTS_TIMEOUT_MS) || 60_000,
    runtime: new URL('./imported-module.js', import.meta.url).href,
  };
  register('./import-hooks.js', import.meta.url, { data });
}
