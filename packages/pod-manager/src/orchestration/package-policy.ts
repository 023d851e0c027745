/**
 * What a module config sent over REST (`PUT /modules/:name/config`) may install and switch on. The
 * config file is the operator's and is trusted; a REST caller is checked against
 * `server.package_policy`: each package and dependency spec must be of an allowed kind (registry
 * names by default, and `file:` only under the configured roots), changes of package can be
 * switched off altogether, and the switches that widen what a module may do (install scripts,
 * code generation) can be turned on only in the file.
 */
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import npa from 'npm-package-arg';
import type { ModuleSpec, RawConfig } from '../config.js';
import { ServiceError } from '../errors.js';

/** Kinds of package spec, as `package_policy.allow` names them. */
export type SpecKind = 'registry' | 'file' | 'url' | 'git';

/** The policy, resolved against the config file's folder. */
export interface PackagePolicy {
  allowChange: boolean;
  allow: ReadonlySet<SpecKind>;
  /** Absolute, real folders `file:` specs may point into. */
  fileRoots: readonly string[];
}

/** The policy of a config's `server.package_policy`. */
export function packagePolicyFrom(
  raw: RawConfig['server']['package_policy'],
  baseDir: string,
): PackagePolicy {
  return {
    allowChange: raw.allow_change,
    allow: new Set(raw.allow),
    fileRoots: raw.file_roots.map((root) => realOrSame(resolve(baseDir, root))),
  };
}

/** The kind of a pip requirement (PEP 508 / pip's forms), and for a local one the path it names. */
export function kindOfRequirement(spec: string, baseDir: string): { kind: SpecKind; path?: string } {
  const target = spec.includes(' @ ') ? spec.slice(spec.indexOf(' @ ') + 3).trim() : spec.trim();
  if (/^git\+/i.test(target)) return { kind: 'git' };
  if (/^file:/i.test(target))
    return { kind: 'file', path: resolve(baseDir, target.replace(/^file:(\/\/)?/i, '')) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return { kind: 'url' };
  if (/^(\.{1,2}\/|\/)/.test(target)) return { kind: 'file', path: resolve(baseDir, target) };
  return { kind: 'registry' };
}

/** The kind of an npm spec, and for file specs the path it names. */
export function kindOf(spec: string, baseDir: string): { kind: SpecKind; path?: string } {
  let parsed: npa.Result;
  try {
    parsed = npa(spec, baseDir);
  } catch (error) {
    throw new ServiceError(
      'BAD_REQUEST',
      `'${spec}' is not an npm package spec: ${(error as Error).message}`,
    );
  }
  switch (parsed.type) {
    case 'version':
    case 'range':
    case 'tag':
      return { kind: 'registry' };
    case 'alias':
      return kindOf(String((parsed as npa.AliasResult).subSpec.raw), baseDir);
    case 'file':
    case 'directory':
      return { kind: 'file', path: parsed.fetchSpec ?? undefined };
    case 'remote':
      return { kind: 'url' };
    default:
      return { kind: 'git' };
  }
}

/**
 * Checks a module config that came over REST against the policy and the module's config before
 * it; PACKAGE_NOT_ALLOWED names the first rule broken.
 */
export function checkRestChange(
  next: ModuleSpec,
  before: ModuleSpec,
  fromFile: ModuleSpec | undefined,
  policy: PackagePolicy,
  baseDir: string,
): void {
  const changed =
    next.package !== before.package || next.dependencies.join('\n') !== before.dependencies.join('\n');
  if (changed && !policy.allowChange) {
    throw refused(
      `changing the package or dependencies of ${next.name} over REST is switched off (server.package_policy.allow_change)`,
    );
  }
  if (changed) {
    const classify = next.runtime === 'python' ? kindOfRequirement : kindOf;
    for (const spec of [next.package, ...next.dependencies]) checkSpec(spec, classify(spec, baseDir), policy);
  }
  for (const [key, on, was] of [
    ['install_scripts', next.installScripts, fromFile?.installScripts],
    ['allow_code_generation', next.codeGeneration, fromFile?.codeGeneration],
  ] as const) {
    if (on && !was) {
      throw refused(`${key} can be turned on for ${next.name} only in the config file, not over REST`);
    }
  }
}

function checkSpec(
  spec: string,
  { kind, path }: { kind: SpecKind; path?: string },
  policy: PackagePolicy,
): void {
  if (!policy.allow.has(kind)) {
    throw refused(
      `'${spec}' is a ${kind} spec; server.package_policy.allow permits ${[...policy.allow].join(', ') || 'none'}`,
    );
  }
  if (kind === 'file') {
    const real = realOrSame(path ?? '');
    const inside = policy.fileRoots.some((root) => {
      const rel = relative(root, real);
      return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
    });
    if (!inside) {
      throw refused(
        `'${spec}' is outside the folders file: specs may use (server.package_policy.file_roots: ${policy.fileRoots.join(', ')})`,
      );
    }
  }
}

function realOrSame(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function refused(message: string): ServiceError {
  return new ServiceError('PACKAGE_NOT_ALLOWED', message);
}
