/**
 * What the import hook asks the pod-manager, each with a deadline: at start-up the modules it
 * serves remotely (`GET /modules`), and, when the app imports one of them, its export names
 * (`GET /modules/:name/exports`), which `import { name }` needs at link time.
 */
import { Rest } from '@splice-orc/protocol';
import { request } from 'undici';

/** What register.ts hands the hooks thread. */
export interface HookData {
  /** The pod-manager's URL. */
  url: string;
  token: string | undefined;
  /** Modules whose calls run remotely (mode remote): their imports become proxies. */
  remote: string[];
  /** Deadline of one export-names query, ms (it may start the module: a cold start). */
  exportsTimeoutMs: number;
  /** URL of imported-module.js, which the generated modules import. */
  runtime: string;
}

/** Options of a query. */
export interface QueryOptions {
  token?: string | undefined;
  timeoutMs: number;
}

/** Largest answer read, bytes: a module list or an export list is far smaller. */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

/**
 * GET `path` of the pod-manager as JSON, within `timeoutMs` for the whole exchange. undici, as the
 * client's transport: fetch() would refuse ports the Fetch standard bars (6000, 6665...).
 */
async function getJson<T>(url: string, path: string, o: QueryOptions): Promise<T> {
  const target = new URL(path, url);
  const signal = AbortSignal.timeout(o.timeoutMs);
  const failed = (error: unknown) => {
    const e = error as Error & { code?: string };
    const why = signal.aborted ? `no answer within ${o.timeoutMs} ms` : (e.code ?? e.message);
    return new Error(`cannot ask the pod-manager at ${url} (GET ${target.pathname}): ${why}`);
  };
  let status: number;
  let text = '';
  try {
    const response = await request(target, {
      method: 'GET',
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      signal,
    });
    status = response.statusCode;
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_ANSWER_BYTES) {
        response.body.destroy();
        throw new Error(`its answer is larger than ${MAX_ANSWER_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
    text = Buffer.concat(chunks).toString('utf8');
  } catch (error) {
    throw failed(error);
  }
  if (status < 200 || status >= 300) {
    let why = text.slice(0, 500);
    try {
      const body = JSON.parse(text) as Rest.ErrorBody;
      why = `${body.error.code}: ${body.error.message}`;
    } catch {}
    throw new Error(`the pod-manager at ${url} answered GET ${target.pathname} with ${status} (${why})`);
  }
  return JSON.parse(text) as T;
}

/** The modules the pod-manager serves remotely (their mode is remote). */
export async function servedRemotely(url: string, o: QueryOptions): Promise<string[]> {
  const { modules } = await getJson<{ modules: Rest.ModuleView[] }>(url, Rest.Paths.modules, o);
  return modules.filter((m) => m.mode === 'remote').map((m) => m.name);
}

/** One module's export names, asked once per process (a module is linked once). */
const cache = new Map<string, Promise<Rest.ModuleExports>>();

/** A module's export names and runtime, from the pod-manager (cached per process). */
export function moduleExports(url: string, name: string, o: QueryOptions): Promise<Rest.ModuleExports> {
  let answer = cache.get(name);
  if (!answer) {
    answer = getJson<Rest.ModuleExports>(url, Rest.Paths.exports(name), o);
    // A failure is not kept: a later import may try again.
    answer.catch(() => cache.delete(name));
    cache.set(name, answer);
  }
  return answer;
}
