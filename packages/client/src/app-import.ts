/**
 * Imports a module placed local the way the app itself would: resolved (ESM rules, `import`
 * condition) from the app's entry point, else from its working directory, not from this package,
 * which may be linked from elsewhere (a workspace, `npm link`) and see none of the app's
 * dependencies.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { resolve } from 'import-meta-resolve';

/** Where the app's imports resolve from: its entry point's folder, then the working directory. */
function parents(): string[] {
  const out: string[] = [];
  const entry = process.argv[1];
  if (entry) {
    try {
      out.push(pathToFileURL(realpathSync(entry)).href);
    } catch {
      // No such file (a REPL, `node -e`): the working directory stands for the app.
    }
  }
  out.push(pathToFileURL(join(process.cwd(), 'app.js')).href);
  return out;
}

/** Imports `name` as the app would; rejects with the resolution error of the last place tried. */
export async function importFromApp(name: string): Promise<unknown> {
  let failure: unknown;
  for (const parent of parents()) {
    let url: string;
    try {
      url = resolve(name, parent);
    } catch (error) {
      failure = error;
      continue;
    }
    return import(url);
  }
  throw failure;
}
