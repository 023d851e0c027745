/**
 * Node's module customization hooks (registered by register.ts, run in the hooks thread): an
 * import of a module the pod-manager serves remotely, from the app's own files, resolves to a
 * generated module whose exports are remote proxies; `py:<name>` does so for a Python module.
 * Everything else, and every import from inside node_modules (a library expects the real module,
 * not promises), resolves as Node does.
 */
import type { LoadHook, ResolveHook } from 'node:module';
import { type HookData, moduleExports } from './import-startup.js';

const SCHEME = 'splice-orc-remote:';
const PYTHON = 'py:';
let data: HookData;
let remote: Set<string>;

/** Receives what register.ts asked at start-up. */
export function initialize(d: HookData): void {
  data = d;
  remote = new Set(d.remote);
}

export const resolve: ResolveHook = (specifier, context, next) => {
  const python = specifier.startsWith(PYTHON);
  const name = python ? specifier.slice(PYTHON.length) : specifier;
  if (python && !remote.has(name)) {
    const served = [...remote].join(', ') || 'none';
    throw new Error(
      `splice-orc: cannot import '${specifier}': the pod-manager at ${data.url} serves no module '${name}' remotely (it does: ${served})`,
    );
  }
  const fromApp = !context.parentURL?.includes('/node_modules/');
  if (python || (remote.has(name) && fromApp)) {
    return { url: `${SCHEME}${encodeURIComponent(name)}${python ? '?python' : ''}`, shortCircuit: true };
  }
  return next(specifier, context);
};

export const load: LoadHook = async (url, context, next) => {
  if (!url.startsWith(SCHEME)) return next(url, context);
  const [encoded = '', query] = url.slice(SCHEME.length).split('?');
  const name = decodeURIComponent(encoded);
  const answer = await moduleExports(data.url, name, { token: data.token, timeoutMs: data.exportsTimeoutMs });
  if (query === 'python' && answer.runtime !== 'python')
    throw new Error(
      `splice-orc: cannot import 'py:${name}': ${name} is a Node module; import it as '${name}'`,
    );
  return { format: 'module', shortCircuit: true, source: moduleSource(name, answer.exports, data.runtime) };
};

/**
 * A module whose default export is the remote module (or its `default`, for an ES module that has
 * one) and whose named exports are its members, each a proxy: reading them sends nothing.
 */
export function moduleSource(name: string, exports: readonly string[], runtime: string): string {
  const lines = [
    `import { importedModule } from ${JSON.stringify(runtime)};`,
    `const m = importedModule(${JSON.stringify(name)});`,
    exports.includes('default') ? 'export default m.default;' : 'export default m;',
  ];
  exports.forEach((member, i) => {
    if (member === 'default') return;
    lines.push(
      `const e${i} = m[${JSON.stringify(member)}];`,
      `export { e${i} as ${JSON.stringify(member)} };`,
    );
  });
  return `${lines.join('\n')}\n`;
}
