/**
 * Loads the module a server serves, ESM or CommonJS, and gives the executor one root object to
 * start paths from.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkKey, checkValue } from './guard.js';

/** Options of {@link loadModule}. */
export interface LoadModuleOptions {
  /** Module specifier to import, e.g. `mathjs` or `@scope/pkg/sub`. */
  name: string;
  /**
   * Directory whose node_modules holds the module (the pod-manager's install cache). Without it the
   * module is resolved from the module-server's own location.
   */
  resolveFrom?: string | undefined;
}

/** The loaded module: the object that paths with no remote reference start from. */
export interface LoadedModule {
  root: object;
  /** What a caller can reach on the root by name (see {@link exportNames}). */
  exports: string[];
}

/** A name an `export const` (or `import { name }`) can carry. */
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * The names a caller can reach on a module's root, sorted: its own enumerable keys (an ES module's
 * exports, `default` included; a CommonJS module's `module.exports` keys) that are identifiers and
 * that the guard lets through, never `then` (a chain cannot reach it). What a client needs to
 * link `import { name } from` to a remote module.
 */
export function exportNames(root: object): string[] {
  const names: string[] = [];
  for (const key of Object.keys(root)) {
    if (!IDENTIFIER.test(key) || key === 'then') continue;
    try {
      checkKey(key, [key]);
      checkValue((root as Record<string, unknown>)[key], [key]);
    } catch {
      // Refused by the guard, or a getter that throws: not reachable.
      continue;
    }
    names.push(key);
  }
  return names.sort();
}

const IMPORTER = '.splice-import.mjs';

/**
 * Imports the module. ESM resolution (with the `import` condition) must happen from the install
 * directory, and only an `import()` written in a file there does that on every Node version we
 * support, so a one-line importer is placed beside node_modules.
 */
export async function loadModule(options: LoadModuleOptions): Promise<LoadedModule> {
  const namespace = (await importFrom(options)) as Record<string, unknown>;
  const root = rootOf(namespace);
  return { root, exports: exportNames(root) };
}

async function importFrom({ name, resolveFrom }: LoadModuleOptions): Promise<unknown> {
  if (!resolveFrom) return import(name);
  const importer = join(resolveFrom, IMPORTER);
  if (!existsSync(importer)) {
    try {
      writeImporter(resolveFrom);
    } catch {
      // A read-only folder without the importer: resolve as CommonJS does, which finds the entry
      // of every package that has a `main` or a `require` export.
      return import(pathToFileURL(createRequire(join(resolveFrom, 'noop.js')).resolve(name)).href);
    }
  }
  const { default: importInDir } = (await import(pathToFileURL(importer).href)) as {
    default: (specifier: string) => Promise<unknown>;
  };
  return importInDir(name);
}

/**
 * Writes the importer into an install folder. Installers call it, so that a module-server whose
 * file system is read-only (Node's permission model, a read-only container) finds it there.
 */
export function writeImporter(dir: string): void {
  writeFileSync(join(dir, IMPORTER), 'export default (specifier) => import(specifier);\n');
}

/**
 * A CommonJS module arrives as a namespace whose named exports are copies of `default`'s
 * properties; its real root is `module.exports` (the default), which also keeps functions that
 * the export lexer could not see and lets a module that exports a function be called.
 */
export function rootOf(namespace: Record<string, unknown>): object {
  const fallback = namespace.default;
  if (fallback === null || (typeof fallback !== 'object' && typeof fallback !== 'function')) return namespace;
  const defaults = fallback as Record<string, unknown>;
  const named = Object.keys(namespace).filter((k) => k !== 'default' && k !== 'module.exports');
  const isCommonJs = named.every((k) => Object.hasOwn(defaults, k) && defaults[k] === namespace[k]);
  return isCommonJs ? defaults : namespace;
}
